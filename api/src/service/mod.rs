//! The tonic services of `fiberlb.v1`. Each handler authenticates, authorizes, validates,
//! then writes the store in one compare-and-swap transaction, re-reading and retrying when a
//! concurrent writer got there first (a stale client-supplied `revision` is `ABORTED`).

mod access;
mod backend;
mod certificate;
mod cluster;
mod index;
mod listener;
mod load_balancer;
mod page;
mod pem;
mod pool;
mod reaper;

pub use reaper::reap_drained_backends;

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::auth::{audit, Authenticator, Principal};
use crate::error::ApiResult;
use crate::repo::Repo;
use crate::runtime::RuntimeView;
use crate::store::ConfigStore;

/// Shared state of every service.
#[derive(Clone)]
pub struct Api {
    pub(crate) repo: Repo,
    pub(crate) auth: Authenticator,
    pub(crate) runtime: Arc<dyn RuntimeView>,
}

impl Api {
    /// Services over a store and a runtime view.
    pub fn new(store: Arc<dyn ConfigStore>, runtime: Arc<dyn RuntimeView>) -> Self {
        let repo = Repo::new(store);
        Self {
            auth: Authenticator::new(repo.clone()),
            repo,
            runtime,
        }
    }

    /// The typed store access.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    pub(crate) async fn principal<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        Ok(self.auth.authenticate(req.metadata()).await?)
    }

    /// All services, ready to add to a tonic router.
    pub fn services(&self) -> Services {
        use fiberlb_proto::v1::*;
        Services {
            lb: lb_service_server::LbServiceServer::new(self.clone()),
            listener: listener_service_server::ListenerServiceServer::new(self.clone()),
            pool: pool_service_server::PoolServiceServer::new(self.clone()),
            backend: backend_service_server::BackendServiceServer::new(self.clone()),
            certificate: certificate_service_server::CertificateServiceServer::new(self.clone()),
            access: access_service_server::AccessServiceServer::new(self.clone()),
            cluster: cluster_service_server::ClusterServiceServer::new(self.clone()),
        }
    }
}

/// The generated servers, one per service.
#[allow(missing_docs)]
pub struct Services {
    pub lb: fiberlb_proto::v1::lb_service_server::LbServiceServer<Api>,
    pub listener: fiberlb_proto::v1::listener_service_server::ListenerServiceServer<Api>,
    pub pool: fiberlb_proto::v1::pool_service_server::PoolServiceServer<Api>,
    pub backend: fiberlb_proto::v1::backend_service_server::BackendServiceServer<Api>,
    pub certificate: fiberlb_proto::v1::certificate_service_server::CertificateServiceServer<Api>,
    pub access: fiberlb_proto::v1::access_service_server::AccessServiceServer<Api>,
    pub cluster: fiberlb_proto::v1::cluster_service_server::ClusterServiceServer<Api>,
}

/// Runs a mutating handler and writes its audit line. The handler returns the response and
/// the resource path (spec §5.3); on failure `fallback` names what was asked for.
pub(crate) async fn audited<T>(
    p: &Principal,
    action: &str,
    fallback: &str,
    fut: impl Future<Output = ApiResult<(T, String)>>,
) -> Result<Response<T>, Status> {
    let res = fut.await;
    match &res {
        Ok((_, path)) => audit(p, action, path, None),
        Err(e) => audit(p, action, fallback, Some(e)),
    }
    res.map(|(t, _)| Response::new(t)).map_err(Status::from)
}

/// Wraps a read-only handler's result.
pub(crate) fn reply<T>(res: ApiResult<T>) -> Result<Response<T>, Status> {
    res.map(Response::new).map_err(Status::from)
}

#[cfg(test)]
mod tests;
