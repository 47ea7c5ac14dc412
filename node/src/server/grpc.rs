//! The gRPC API server: the `fiberlb.v1` services, `grpc.health.v1` and server reflection,
//! over plaintext or TLS as the `server` builder from [`super::tls::grpc_server`] says.

use std::sync::Arc;

use fiberlb_api::service::Api;
use fiberlb_api::store::ConfigStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use super::grpc_metrics::GrpcMetricsLayer;
use super::runtime::NodeRuntime;

/// Serves until `stop` turns true, then finishes in-flight calls. `server` carries the
/// transport settings (TLS) checked at start-up; the services are added here.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    store: Arc<dyn ConfigStore>,
    runtime: Arc<NodeRuntime>,
    mut stop: watch::Receiver<bool>,
) {
    let api = Api::new(store, runtime);
    let s = api.services();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    use fiberlb_proto::v1::*;
    health_reporter
        .set_serving::<lb_service_server::LbServiceServer<Api>>()
        .await;
    health_reporter
        .set_serving::<listener_service_server::ListenerServiceServer<Api>>()
        .await;
    health_reporter
        .set_serving::<pool_service_server::PoolServiceServer<Api>>()
        .await;
    health_reporter
        .set_serving::<backend_service_server::BackendServiceServer<Api>>()
        .await;
    health_reporter
        .set_serving::<certificate_service_server::CertificateServiceServer<Api>>()
        .await;
    health_reporter
        .set_serving::<access_service_server::AccessServiceServer<Api>>()
        .await;
    health_reporter
        .set_serving::<cluster_service_server::ClusterServiceServer<Api>>()
        .await;
    let reflection = match tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fiberlb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
    {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "server reflection unavailable");
            None
        }
    };
    let router = server
        .layer(GrpcMetricsLayer)
        .add_service(health)
        .add_optional_service(reflection)
        .add_service(s.lb)
        .add_service(s.listener)
        .add_service(s.pool)
        .add_service(s.backend)
        .add_service(s.certificate)
        .add_service(s.access)
        .add_service(s.cluster);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
    {
        tracing::error!(error = %e, "gRPC server failed");
    }
}
