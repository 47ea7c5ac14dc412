//! Global client options and the authenticated gRPC connection to a node: plaintext for
//! `http://` endpoints, TLS (optionally with a client certificate) for `https://` ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fiberlb_proto::v1::access_service_client::AccessServiceClient;
use fiberlb_proto::v1::backend_service_client::BackendServiceClient;
use fiberlb_proto::v1::certificate_service_client::CertificateServiceClient;
use fiberlb_proto::v1::cluster_service_client::ClusterServiceClient;
use fiberlb_proto::v1::lb_service_client::LbServiceClient;
use fiberlb_proto::v1::listener_service_client::ListenerServiceClient;
use fiberlb_proto::v1::pool_service_client::PoolServiceClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::error::{with_causes, CliError};
use super::output::Format;

/// Options of every client command. They are global: they may be given before or after
/// the subcommand.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct ClientOpts {
    /// gRPC endpoint of any fiberlb node; `https://` uses TLS.
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
    /// PEM CA bundle that signed the node's certificate, trusted instead of the built-in
    /// public (Mozilla) roots for an `https://` endpoint.
    #[arg(long, env = "FIBERLB_CA_FILE", value_name = "PEM", global = true)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for nodes that require client certificates (mTLS);
    /// needs --client-key.
    #[arg(long, env = "FIBERLB_CLIENT_CERT", value_name = "PEM", global = true)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "FIBERLB_CLIENT_KEY", value_name = "PEM", global = true)]
    pub client_key: Option<PathBuf>,
    /// Name the node's certificate must be valid for (also sent as SNI), when it differs
    /// from the endpoint's host, e.g. when dialling a node by IP address.
    #[arg(
        long,
        env = "FIBERLB_TLS_SERVER_NAME",
        value_name = "NAME",
        global = true
    )]
    pub tls_server_name: Option<String>,
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
        let mut endpoint = Endpoint::from_shared(opts.endpoint.clone())
            .map_err(|e| CliError::invalid(format!("invalid endpoint {:?}: {e}", opts.endpoint)))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let https = endpoint.uri().scheme_str() == Some("https");
        if let Some(tls) = client_tls(opts, https, timeout)? {
            endpoint = endpoint.tls_config(tls).map_err(|e| {
                CliError::invalid(format!(
                    "TLS settings (--ca-file, --client-cert, --client-key): {}",
                    with_causes(&e)
                ))
            })?;
        }
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

/// TLS for an `https://` endpoint (`None` for plaintext). The PEM files are parsed here so
/// that a wrong one is reported by its flag rather than as a failed handshake.
fn client_tls(
    opts: &ClientOpts,
    https: bool,
    handshake_timeout: Duration,
) -> Result<Option<ClientTlsConfig>, CliError> {
    if !https {
        let given = [
            (opts.ca_file.is_some(), "--ca-file"),
            (opts.client_cert.is_some(), "--client-cert"),
            (opts.client_key.is_some(), "--client-key"),
            (opts.tls_server_name.is_some(), "--tls-server-name"),
        ];
        // A TLS option with a plaintext endpoint is a mistake; sending the credential in
        // the clear instead would be worse than refusing.
        if let Some((_, flag)) = given.iter().find(|(set, _)| *set) {
            return Err(CliError::invalid(format!(
                "{flag} needs an https:// endpoint, got {}",
                opts.endpoint
            )));
        }
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new().timeout(handshake_timeout);
    tls = match &opts.ca_file {
        Some(path) => {
            let pem = read_pem(path)?;
            certificates(path, &pem, "--ca-file")?;
            tls.ca_certificate(Certificate::from_pem(pem))
        }
        // Compiled-in roots: the same on every machine and no file system lookups.
        None => tls.with_webpki_roots(),
    };
    match (&opts.client_cert, &opts.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let cert = read_pem(cert_path)?;
            certificates(cert_path, &cert, "--client-cert")?;
            let key = read_pem(key_path)?;
            PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
                CliError::invalid(format!(
                    "--client-key {}: no usable PEM private key: {e}",
                    key_path.display()
                ))
            })?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        (Some(_), None) => return Err(CliError::invalid("--client-cert needs --client-key")),
        (None, Some(_)) => return Err(CliError::invalid("--client-key needs --client-cert")),
    }
    if let Some(name) = &opts.tls_server_name {
        ServerName::try_from(name.as_str())
            .map_err(|e| CliError::invalid(format!("--tls-server-name {name:?}: {e}")))?;
        tls = tls.domain_name(name.clone());
    }
    Ok(Some(tls))
}

fn read_pem(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::io(path, e))
}

/// Checks that `pem` (the content of `path`, given with `flag`) holds certificates.
fn certificates(path: &Path, pem: &[u8], flag: &str) -> Result<(), CliError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::invalid(format!("{flag} {}: not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CliError::invalid(format!(
            "{flag} {}: no PEM CERTIFICATE block found",
            path.display()
        )));
    }
    Ok(())
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
            ca_file: None,
            client_cert: None,
            client_key: None,
            tls_server_name: None,
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
    fn tls_flags_parse_as_global_options() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "fiberlb",
            "lb",
            "list",
            "--org",
            "acme",
            "--endpoint",
            "https://10.0.0.1:6300",
            "--ca-file",
            "/ca.pem",
            "--client-cert",
            "/c.pem",
            "--client-key",
            "/k.pem",
            "--tls-server-name",
            "api.example.com",
        ])
        .unwrap();
        let o = &cli.opts;
        assert_eq!(o.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(o.client_cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(o.client_key.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(o.tls_server_name.as_deref(), Some("api.example.com"));
    }

    #[test]
    fn plaintext_endpoints_refuse_tls_options() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(1);
        assert!(client_tls(&opts(dir.path()), false, t).unwrap().is_none());
        let mut o = opts(dir.path());
        o.ca_file = Some("/ca.pem".into());
        let e = client_tls(&o, false, t).unwrap_err().to_string();
        assert!(e.starts_with("--ca-file needs an https:// endpoint"), "{e}");
        let mut o = opts(dir.path());
        o.tls_server_name = Some("x".into());
        assert!(client_tls(&o, false, t).is_err());
    }

    #[test]
    fn https_checks_its_files_and_names_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(1);
        let mut o = opts(dir.path());
        o.endpoint = "https://127.0.0.1:1".into();
        // No flags: the built-in roots, accepted by tonic.
        let tls = client_tls(&o, true, t).unwrap().unwrap();
        assert!(Endpoint::from_static("https://127.0.0.1:1")
            .tls_config(tls)
            .is_ok());

        let missing = dir.path().join("missing.pem");
        o.ca_file = Some(missing.clone());
        let e = client_tls(&o, true, t).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "junk").unwrap();
        o.ca_file = Some(junk.clone());
        let e = client_tls(&o, true, t).unwrap_err().to_string();
        assert!(e.starts_with("--ca-file "), "{e}");
        assert!(e.contains("no PEM CERTIFICATE block"), "{e}");

        o.ca_file = None;
        o.client_cert = Some(junk.clone());
        let e = client_tls(&o, true, t).unwrap_err().to_string();
        assert_eq!(e, "--client-cert needs --client-key");
        o.client_key = Some(junk.clone());
        let e = client_tls(&o, true, t).unwrap_err().to_string();
        assert!(e.starts_with("--client-cert "), "{e}");

        o.client_cert = None;
        o.client_key = None;
        o.tls_server_name = Some("not a name!".into());
        let e = client_tls(&o, true, t).unwrap_err().to_string();
        assert!(e.starts_with("--tls-server-name"), "{e}");
        o.tls_server_name = Some("api.example.com".into());
        assert!(client_tls(&o, true, t).unwrap().is_some());
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
