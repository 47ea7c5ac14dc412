//! gRPC check: `grpc.health.v1.Health/Check` over plaintext HTTP/2 on a fresh channel,
//! passing when the answer is SERVING. No service name (or an empty one) asks about the
//! server as a whole.

use std::net::SocketAddr;
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::CheckError;

/// Runs the check against `addr`.
pub(super) async fn check(
    addr: SocketAddr,
    service: Option<&str>,
    timeout: Duration,
) -> Result<(), CheckError> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| CheckError::Config(e.to_string()))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| CheckError::Connect {
            addr,
            message: error_chain(&e),
        })?;
    let req = HealthCheckRequest {
        service: service.unwrap_or_default().to_string(),
    };
    let resp = HealthClient::new(channel)
        .check(req)
        .await
        .map_err(|s| CheckError::Grpc(format!("{:?}: {}", s.code(), s.message())))?;
    let status = resp.into_inner().status();
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(CheckError::Grpc(format!("status {}", status.as_str_name())))
    }
}

/// tonic's transport error says only "transport error"; the cause is in its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
