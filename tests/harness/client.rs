//! Typed gRPC clients of one node, each call carrying a credential (or none) and bounded by
//! a per-request deadline, so a wedged server fails a test instead of hanging it.

use std::time::Duration;

use anyhow::Context;
use fiberlb_proto::v1::access_service_client::AccessServiceClient;
use fiberlb_proto::v1::backend_service_client::BackendServiceClient;
use fiberlb_proto::v1::certificate_service_client::CertificateServiceClient;
use fiberlb_proto::v1::cluster_service_client::ClusterServiceClient;
use fiberlb_proto::v1::lb_service_client::LbServiceClient;
use fiberlb_proto::v1::listener_service_client::ListenerServiceClient;
use fiberlb_proto::v1::pool_service_client::PoolServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataKey};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_client::HealthClient;

/// Deadline of every RPC made through these clients.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline of establishing the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client presents.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `authorization: Bearer <secret>`.
    Bearer(String),
    /// `x-api-key: <secret>`.
    ApiKey(String),
    /// Nothing.
    None,
}

/// Adds the credential header to every request.
#[derive(Clone)]
pub struct Auth {
    header: Option<(MetadataKey<tonic::metadata::Ascii>, AsciiMetadataValue)>,
}

impl Auth {
    fn new(cred: &Credential) -> anyhow::Result<Self> {
        let header = match cred {
            Credential::Bearer(s) => Some((
                MetadataKey::from_static("authorization"),
                format!("Bearer {s}").parse()?,
            )),
            Credential::ApiKey(s) => Some((MetadataKey::from_static("x-api-key"), s.parse()?)),
            Credential::None => None,
        };
        Ok(Self { header })
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some((k, v)) = &self.header {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        Ok(req)
    }
}

/// The transport every client uses.
pub type Svc = InterceptedService<Channel, Auth>;

/// One client per service, sharing a connection.
#[derive(Clone)]
pub struct Clients {
    /// `LbService`.
    pub lb: LbServiceClient<Svc>,
    /// `ListenerService`.
    pub listener: ListenerServiceClient<Svc>,
    /// `PoolService`.
    pub pool: PoolServiceClient<Svc>,
    /// `BackendService`.
    pub backend: BackendServiceClient<Svc>,
    /// `CertificateService`.
    pub cert: CertificateServiceClient<Svc>,
    /// `AccessService`.
    pub access: AccessServiceClient<Svc>,
    /// `ClusterService`.
    pub cluster: ClusterServiceClient<Svc>,
    /// `grpc.health.v1.Health`.
    pub health: HealthClient<Svc>,
}

impl Clients {
    /// Clients of the node at `url` (connected lazily, on the first call).
    pub fn connect(url: &str, cred: Credential) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("endpoint {url}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(RPC_TIMEOUT)
            .connect_lazy();
        Self::over(channel, cred)
    }

    /// Clients of the node at `url` (`https://…`) over TLS configured by `tls` (connected
    /// lazily, so a refused handshake shows as the first call's error).
    pub fn connect_tls(url: &str, tls: ClientTlsConfig, cred: Credential) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("endpoint {url}"))?
            .tls_config(tls)
            .with_context(|| format!("TLS settings for {url}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(RPC_TIMEOUT)
            .connect_lazy();
        Self::over(channel, cred)
    }

    /// Clients sharing `channel`, each call presenting `cred`.
    pub fn over(channel: Channel, cred: Credential) -> anyhow::Result<Self> {
        let auth = Auth::new(&cred)?;
        let svc = || InterceptedService::new(channel.clone(), auth.clone());
        Ok(Self {
            lb: LbServiceClient::new(svc()),
            listener: ListenerServiceClient::new(svc()),
            pool: PoolServiceClient::new(svc()),
            backend: BackendServiceClient::new(svc()),
            cert: CertificateServiceClient::new(svc()),
            access: AccessServiceClient::new(svc()),
            cluster: ClusterServiceClient::new(svc()),
            health: HealthClient::new(svc()),
        })
    }
}
