//! [`ConfigStore`] on the etcd v3 API (`etcd-client`): the ChainFire backend of a fleet.
//!
//! The mapping is direct: our store revision is etcd's cluster revision, `mod_revision == 0`
//! compares "absent" (etcd reports 0 for a missing key), a transaction is one etcd `Txn`,
//! and a watch is a prefix watch from `after + 1`. A compacted start revision comes back as
//! [`StoreError::Compacted`] so the caller reloads; a lost connection as
//! [`StoreError::Unavailable`], so writes fail clearly while nodes keep serving their last
//! snapshot.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions,
    Txn as EtcdTxn, TxnOp, WatchOptions,
};
use fiberlb_api::store::{
    Compare, ConfigStore, KeyValue, Op, StoreError, Txn, WatchEvent, WatchStream,
};
use futures::StreamExt;

/// How to reach the cluster.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port` endpoints.
    pub endpoints: Vec<String>,
    /// User and password for etcd authentication.
    pub user: Option<(String, String)>,
    /// PEM CA bundle for `https` endpoints.
    pub ca_pem: Option<String>,
}

/// The etcd-backed store.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtcdStore")
    }
}

/// Per-request limit, so a partitioned cluster fails calls instead of hanging them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd: {e}"))
}

fn rev(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = std::str::from_utf8(kv.key())
        .map_err(|_| StoreError::Corrupted("etcd returned a key that is not UTF-8".into()))?
        .to_string();
    Ok(KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: rev(kv.create_revision()),
        mod_revision: rev(kv.mod_revision()),
    })
}

impl EtcdStore {
    /// Connects (lazily: an unreachable cluster makes calls fail, not this).
    pub async fn connect(opts: &EtcdOptions) -> Result<Self, StoreError> {
        if opts.endpoints.is_empty() {
            return Err(StoreError::Unavailable(
                "no etcd endpoints configured".into(),
            ));
        }
        let mut co = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true);
        if let Some((u, p)) = &opts.user {
            co = co.with_user(u.clone(), p.clone());
        }
        if let Some(ca) = &opts.ca_pem {
            co = co.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(ca)),
            );
        }
        let client = Client::connect(opts.endpoints.clone(), Some(co))
            .await
            .map_err(unavailable)?;
        Ok(Self { client })
    }
}

#[async_trait]
impl ConfigStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(unavailable)?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn range(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        let resp = self
            .client
            .kv_client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        let mut out = resp
            .kvs()
            .iter()
            .map(to_kv)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn txn(&self, txn: Txn) -> Result<u64, StoreError> {
        let first_key = txn.compares.first().map(|c| match c {
            Compare::ModRevision { key, .. } => key.clone(),
        });
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|c| match c {
                Compare::ModRevision { key, revision } => EtcdCompare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    i64::try_from(*revision).unwrap_or(i64::MAX),
                ),
            })
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(key, value, None),
                Op::Delete { key } => TxnOp::delete(key, None),
            })
            .collect();
        let resp = self
            .client
            .kv_client()
            .txn(EtcdTxn::new().when(compares).and_then(ops))
            .await
            .map_err(unavailable)?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict {
                key: first_key.unwrap_or_default(),
            });
        }
        Ok(resp.header().map(|h| rev(h.revision())).unwrap_or(0))
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        let resp = self
            .client
            .kv_client()
            .get(
                fiberlb_api::keys::ROOT,
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .map_err(unavailable)?;
        Ok(resp.header().map(|h| rev(h.revision())).unwrap_or(0))
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream, StoreError> {
        let start = i64::try_from(after.saturating_add(1)).unwrap_or(i64::MAX);
        let opts = WatchOptions::new().with_prefix().with_start_revision(start);
        let stream = self
            .client
            .watch_client()
            .watch(prefix, Some(opts))
            .await
            .map_err(unavailable)?;
        let events = stream.flat_map(move |msg| {
            let out: Vec<Result<WatchEvent, StoreError>> = match msg {
                Err(e) => vec![Err(unavailable(e))],
                Ok(resp) if resp.compact_revision() > 0 => {
                    vec![Err(StoreError::Compacted {
                        requested: after,
                        oldest: rev(resp.compact_revision()),
                    })]
                }
                Ok(resp) if resp.canceled() => {
                    vec![Err(StoreError::Unavailable(format!(
                        "etcd cancelled the watch: {}",
                        resp.cancel_reason()
                    )))]
                }
                Ok(resp) => resp
                    .events()
                    .iter()
                    .filter_map(|ev| {
                        let kv = ev.kv()?;
                        Some(match ev.event_type() {
                            EventType::Put => to_kv(kv).map(WatchEvent::Put),
                            EventType::Delete => to_kv(kv).map(|kv| WatchEvent::Delete {
                                key: kv.key,
                                mod_revision: kv.mod_revision,
                            }),
                        })
                    })
                    .collect(),
            };
            futures::stream::iter(out)
        });
        Ok(Box::pin(events))
    }

    fn backend_name(&self) -> &'static str {
        "chainfire"
    }
}
