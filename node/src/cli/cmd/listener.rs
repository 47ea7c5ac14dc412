//! `fiberlb listener ...`: listeners (ListenerService; rules are `fiberlb rule`).

use fiberlb_proto::v1 as pv;

use crate::cli::args::{collect, key_value, Paging};
use crate::cli::conn::Api;
use crate::cli::enums::{ClientAuth, Protocol, TlsVersion};
use crate::cli::error::CliError;
use crate::cli::output::{print_done, print_list, print_object, Column, Format};

/// TLS settings of a listener. On `update`, the flags given change the current settings
/// and the others are kept.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsFlags {
    /// Default certificate id.
    #[arg(long, alias = "certificate-id", value_name = "CERT_ID")]
    pub certificate: Option<String>,
    /// Lowest TLS version accepted.
    #[arg(long, value_enum)]
    pub min_version: Option<TlsVersion>,
    /// rustls cipher suite names (comma-separated or repeated; default: the provider's).
    #[arg(long = "cipher-suite", value_name = "SUITE", value_delimiter = ',')]
    pub cipher_suites: Vec<String>,
    /// Client certificate policy.
    #[arg(long, value_enum)]
    pub client_auth: Option<ClientAuth>,
    /// SNI name to certificate id, SNI=CERT_ID (repeatable; replaces the map).
    #[arg(long = "sni-cert", value_name = "SNI=CERT_ID", value_parser = key_value)]
    pub sni_certificates: Vec<(String, String)>,
    /// CA bundle certificate id verifying client certificates ("" clears it).
    #[arg(long, alias = "client-ca-certificate-id", value_name = "CERT_ID")]
    pub client_ca: Option<String>,
}

impl TlsFlags {
    fn any(&self) -> bool {
        self.certificate.is_some()
            || self.min_version.is_some()
            || !self.cipher_suites.is_empty()
            || self.client_auth.is_some()
            || !self.sni_certificates.is_empty()
            || self.client_ca.is_some()
    }

    /// `base` with the given flags applied.
    fn apply_to(&self, mut base: pv::TlsConfig) -> pv::TlsConfig {
        if let Some(c) = &self.certificate {
            base.certificate_id = c.clone();
        }
        if let Some(v) = self.min_version {
            base.min_version = v.to_proto();
        }
        if !self.cipher_suites.is_empty() {
            base.cipher_suites = self.cipher_suites.clone();
        }
        if let Some(a) = self.client_auth {
            base.client_auth = a.to_proto();
        }
        if !self.sni_certificates.is_empty() {
            base.sni_certificates = self.sni_certificates.iter().cloned().collect();
        }
        if let Some(ca) = &self.client_ca {
            base.client_ca_certificate_id = Some(ca.clone()).filter(|c| !c.is_empty());
        }
        base
    }
}

/// Listener commands.
#[derive(Debug, clap::Subcommand)]
pub enum ListenerCmd {
    /// Create a listener on a load balancer.
    Create {
        /// Load balancer id.
        #[arg(long, alias = "lb-id")]
        lb: String,
        /// Name, unique within the load balancer.
        #[arg(long)]
        name: String,
        /// Protocol.
        #[arg(long, value_enum)]
        protocol: Protocol,
        /// Port.
        #[arg(long)]
        port: u32,
        #[command(flatten)]
        tls: TlsFlags,
        /// Pool id for traffic no rule claims.
        #[arg(long, alias = "default-pool-id", value_name = "POOL_ID")]
        default_pool: Option<String>,
        /// Maximum concurrent connections.
        #[arg(long)]
        connection_limit: Option<u32>,
        /// Client idle timeout, ms (default 60000).
        #[arg(long, value_name = "MS")]
        timeout_client: Option<u32>,
        /// Backend timeout, ms (default 30000).
        #[arg(long, value_name = "MS")]
        timeout_backend: Option<u32>,
    },
    /// Show a listener with its rules.
    Get {
        /// Listener id.
        id: String,
    },
    /// List the listeners of a load balancer.
    List {
        /// Load balancer id.
        #[arg(long, alias = "lb-id")]
        lb: String,
        /// Only this protocol.
        #[arg(long, value_enum)]
        protocol: Option<Protocol>,
        /// Only names starting with this.
        #[arg(long)]
        name_filter: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Change a listener.
    Update {
        /// Listener id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New port.
        #[arg(long)]
        port: Option<u32>,
        #[command(flatten)]
        tls: TlsFlags,
        /// Pool id for traffic no rule claims ("" clears it).
        #[arg(long, alias = "default-pool-id", value_name = "POOL_ID")]
        default_pool: Option<String>,
        /// Maximum concurrent connections (0 clears it).
        #[arg(long)]
        connection_limit: Option<u32>,
        /// Client idle timeout, ms.
        #[arg(long, value_name = "MS")]
        timeout_client: Option<u32>,
        /// Backend timeout, ms.
        #[arg(long, value_name = "MS")]
        timeout_backend: Option<u32>,
        /// Enable (true) or disable (false) the listener.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        enabled: Option<bool>,
        /// Fail unless the listener is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Delete a listener.
    Delete {
        /// Listener id.
        id: String,
        /// Fail unless the listener is still at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
}

/// Columns of `listener list`.
pub const COLUMNS: &[Column] = &[
    Column::Field("ID", "/id"),
    Column::Field("NAME", "/name"),
    Column::Field("PROTOCOL", "/protocol"),
    Column::Field("PORT", "/port"),
    Column::Field("ENABLED", "/enabled"),
    Column::Field("DEFAULT_POOL", "/default_pool_id"),
    Column::Count("RULES", "/rules"),
    Column::Field("CERTIFICATE", "/tls_config/certificate_id"),
];

/// Runs one listener command.
pub async fn run(api: Api, cmd: ListenerCmd, fmt: Format) -> Result<(), CliError> {
    let mut c = api.listener.clone();
    match cmd {
        ListenerCmd::Create {
            lb,
            name,
            protocol,
            port,
            tls,
            default_pool,
            connection_limit,
            timeout_client,
            timeout_backend,
        } => {
            let req = pv::CreateListenerRequest {
                lb_id: lb,
                name,
                protocol: protocol.to_proto(),
                port,
                tls_config: tls.any().then(|| tls.apply_to(pv::TlsConfig::default())),
                default_pool_id: default_pool,
                connection_limit,
                timeout_client,
                timeout_backend,
            };
            print_object(fmt, &c.create_listener(req).await?.into_inner())
        }
        ListenerCmd::Get { id } => print_object(
            fmt,
            &c.get_listener(pv::GetListenerRequest { listener_id: id })
                .await?
                .into_inner(),
        ),
        ListenerCmd::List {
            lb,
            protocol,
            name_filter,
            paging,
        } => {
            let (listeners, next_page_token, total_count) = collect(&paging, |page_token| {
                let mut c = c.clone();
                let req = pv::ListListenersRequest {
                    lb_id: lb.clone(),
                    protocol_filter: protocol.map(|p| p.to_proto()),
                    limit: paging.limit,
                    page_token,
                    name_filter: name_filter.clone(),
                };
                async move {
                    let r = c.list_listeners(req).await?.into_inner();
                    Ok((r.listeners, r.next_page_token, r.total_count))
                }
            })
            .await?;
            let resp = pv::ListListenersResponse {
                listeners,
                next_page_token,
                total_count,
            };
            print_list(fmt, &resp, "listeners", COLUMNS)
        }
        ListenerCmd::Update {
            id,
            name,
            port,
            tls,
            default_pool,
            connection_limit,
            timeout_client,
            timeout_backend,
            enabled,
            revision,
        } => {
            // The API replaces TLS settings whole: start from the current ones so that one
            // flag changes one thing.
            let tls_config = if tls.any() {
                let cur = c
                    .get_listener(pv::GetListenerRequest {
                        listener_id: id.clone(),
                    })
                    .await?
                    .into_inner();
                Some(tls.apply_to(cur.tls_config.unwrap_or_default()))
            } else {
                None
            };
            let req = pv::UpdateListenerRequest {
                listener_id: id,
                name,
                tls_config,
                default_pool_id: default_pool,
                connection_limit,
                timeout_client,
                timeout_backend,
                enabled,
                revision,
                port,
            };
            print_object(fmt, &c.update_listener(req).await?.into_inner())
        }
        ListenerCmd::Delete { id, revision } => {
            let r = c
                .delete_listener(pv::DeleteListenerRequest {
                    listener_id: id,
                    revision,
                })
                .await?
                .into_inner();
            print_done(fmt, &format!("deleted listener {}", r.listener_id), &r)
        }
    }
}
