//! Global client options and the authenticated gRPC connection to a node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fiberlb_proto::v1::access_service_client::AccessServiceClient;
use fiberlb_proto::v1::backend_service_client::BackendServiceClient;
use fiberlb_proto::v1::certificate_service_client::CertificateServiceClient;
use fiberlb_proto::v1::cluster_service_client::ClusterServiceClient;
use fiberlb_proto::v1::lb_service_client::LbServiceClient;
use fiberlb_proto::v1::listener_service_client::ListenerServiceClient;
use fiberlb_proto::v1::pool_service_client::PoolServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use super::error::{with_causes, CliError};
use super::output::Format;

/// Options of every client command. They are global: they may be given before or after
/// the subcommand.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct ClientOpts {
    /// gRPC endpoint of any fiberlb node.
    #[arg(
        long,
        env = "FIBERLB_ENDPOINT",
        default_value = "http://127.0.0.1:6300",
        global = true
    )]
    pub endpoint: String,
    /// Bearer token (default: the bootstrap token in the data dir, if readable there).
    #[arg(long, env = "FIBERLB_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// API key, sent as `x-api-key`.
    #[arg(long, env = "FIBERLB_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Node data directory holding `bootstrap-token`, read when neither --token nor
    /// --api-key is given [env: FIBERLB_DATA_DIR] [default: ./fiberlb-data].
    // No clap `env`/default here: the value of a global flag is copied into `serve`'s own
    // `--data-dir`, which must stay unset unless given (the settings loader reads the
    // environment itself, below its config file's flag precedence).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Limit, in seconds, on connecting and on each call.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub timeout_seconds: u64,
}

/// Adds the credential to every call.
#[derive(Clone, Default)]
pub struct Auth {
    bearer: Option<MetadataValue<Ascii>>,
    api_key: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        if let Some(k) = &self.api_key {
            req.metadata_mut().insert("x-api-key", k.clone());
        }
        Ok(req)
    }
}

/// The transport every client shares.
pub type Svc = InterceptedService<Channel, Auth>;

/// One client per API service, over one connection.
#[derive(Clone)]
pub struct Api {
    /// LbService.
    pub lb: LbServiceClient<Svc>,
    /// ListenerService.
    pub listener: ListenerServiceClient<Svc>,
    /// PoolService.
    pub pool: PoolServiceClient<Svc>,
    /// BackendService.
    pub backend: BackendServiceClient<Svc>,
    /// CertificateService.
    pub cert: CertificateServiceClient<Svc>,
    /// AccessService.
    pub access: AccessServiceClient<Svc>,
    /// ClusterService.
    pub cluster: ClusterServiceClient<Svc>,
}

impl Api {
    /// Connects to `opts.endpoint` with the credential the options select.
    pub async fn connect(opts: &ClientOpts) -> Result<Api, CliError> {
        let auth = credentials(opts)?;
        let timeout = Duration::from_secs(opts.timeout_seconds);
        let endpoint = Endpoint::from_shared(opts.endpoint.clone())
            .map_err(|e| CliError::invalid(format!("invalid endpoint {:?}: {e}", opts.endpoint)))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let connect_err = |reason: String| CliError::Connect {
            endpoint: opts.endpoint.clone(),
            reason,
        };
        let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connect_err(with_causes(&e))),
            Err(_) => {
                return Err(connect_err(format!(
                    "timed out after {} s",
                    opts.timeout_seconds
                )))
            }
        };
        let svc = |c: &Channel| InterceptedService::new(c.clone(), auth.clone());
        Ok(Api {
            lb: LbServiceClient::new(svc(&channel)),
            listener: ListenerServiceClient::new(svc(&channel)),
            pool: PoolServiceClient::new(svc(&channel)),
            backend: BackendServiceClient::new(svc(&channel)),
            cert: CertificateServiceClient::new(svc(&channel)),
            access: AccessServiceClient::new(svc(&channel)),
            cluster: ClusterServiceClient::new(svc(&channel)),
        })
    }
}

/// The credential to send: `--token`/`--api-key` when given, else the node's bootstrap
/// token from the data dir (so `fiberlb` works out of the box next to `fiberlb serve`),
/// else none.
fn credentials(opts: &ClientOpts) -> Result<Auth, CliError> {
    let token = match (&opts.token, &opts.api_key) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(_)) => None,
        (None, None) => bootstrap_token(&data_dir(opts))?,
    };
    Ok(Auth {
        bearer: token
            .map(|t| header_value(&format!("Bearer {t}"), "--token"))
            .transpose()?,
        api_key: opts
            .api_key
            .as_deref()
            .map(|k| header_value(k.trim(), "--api-key"))
            .transpose()?,
    })
}

/// `--data-dir`, else `$FIBERLB_DATA_DIR`, else `./fiberlb-data`.
fn data_dir(opts: &ClientOpts) -> PathBuf {
    opts.data_dir
        .clone()
        .or_else(|| {
            std::env::var_os("FIBERLB_DATA_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("./fiberlb-data"))
}

/// `<data_dir>/bootstrap-token`, trimmed; `None` when the file does not exist or is empty.
fn bootstrap_token(data_dir: &Path) -> Result<Option<String>, CliError> {
    let path = data_dir.join("bootstrap-token");
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::io(&path, e)),
    }
}

fn header_value(v: &str, flag: &str) -> Result<MetadataValue<Ascii>, CliError> {
    MetadataValue::try_from(v).map_err(|_| {
        CliError::invalid(format!(
            "{flag} contains characters not allowed in a header"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> ClientOpts {
        ClientOpts {
            endpoint: "http://127.0.0.1:1".into(),
            token: None,
            api_key: None,
            data_dir: Some(dir.to_path_buf()),
            output: Format::Table,
            timeout_seconds: 1,
        }
    }

    #[test]
    fn bootstrap_token_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(credentials(&opts(dir.path())).unwrap().bearer.is_none());
        std::fs::write(dir.path().join("bootstrap-token"), "s3cret\n").unwrap();
        let auth = credentials(&opts(dir.path())).unwrap();
        assert_eq!(auth.bearer.unwrap().to_str().unwrap(), "Bearer s3cret");
        let mut o = opts(dir.path());
        o.token = Some("given".into());
        assert_eq!(
            credentials(&o).unwrap().bearer.unwrap().to_str().unwrap(),
            "Bearer given"
        );
        let mut o = opts(dir.path());
        o.api_key = Some("k".into());
        let auth = credentials(&o).unwrap();
        assert!(auth.bearer.is_none());
        assert_eq!(auth.api_key.unwrap().to_str().unwrap(), "k");
    }

    #[test]
    fn interceptor_sets_headers() {
        let mut auth = Auth {
            bearer: Some(header_value("Bearer t", "x").unwrap()),
            api_key: None,
        };
        let req = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(req.metadata().get("authorization").unwrap(), "Bearer t");
        assert!(req.metadata().get("x-api-key").is_none());
    }
}
