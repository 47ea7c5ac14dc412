//! Request builders and small object graphs the tests share.

use fiberlb_proto::v1 as pb;
use pb::backend_address::Address;

use crate::client::Clients;

/// A self-signed certificate and its private key, both PEM.
pub struct TestCert {
    /// The certificate chain (just the leaf).
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

/// A self-signed certificate for `names` (ECDSA P-256, generated with rcgen).
pub fn self_signed(names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let c = rcgen::generate_simple_self_signed(names)
        .expect("rcgen generates a self-signed certificate");
    TestCert {
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
    }
}

/// `CreateLoadBalancerRequest` for an org-level load balancer.
pub fn lb(name: &str, org: &str) -> pb::CreateLoadBalancerRequest {
    pb::CreateLoadBalancerRequest {
        name: name.into(),
        org_id: org.into(),
        ..Default::default()
    }
}

/// `CreatePoolRequest` with the default algorithm.
pub fn pool(lb_id: &str, name: &str) -> pb::CreatePoolRequest {
    pb::CreatePoolRequest {
        lb_id: lb_id.into(),
        name: name.into(),
        ..Default::default()
    }
}

/// `CreateListenerRequest` without TLS.
pub fn listener(
    lb_id: &str,
    name: &str,
    protocol: pb::ListenerProtocol,
    port: u32,
) -> pb::CreateListenerRequest {
    pb::CreateListenerRequest {
        lb_id: lb_id.into(),
        name: name.into(),
        protocol: protocol as i32,
        port,
        ..Default::default()
    }
}

/// A backend address of the given kind.
pub fn ip(v: &str) -> Option<pb::BackendAddress> {
    Some(pb::BackendAddress {
        address: Some(Address::Ip(v.into())),
    })
}

/// A host-name backend address.
pub fn hostname(v: &str) -> Option<pb::BackendAddress> {
    Some(pb::BackendAddress {
        address: Some(Address::Hostname(v.into())),
    })
}

/// A VM backend address.
pub fn vm(v: &str) -> Option<pb::BackendAddress> {
    Some(pb::BackendAddress {
        address: Some(Address::VmId(v.into())),
    })
}

/// `AddBackendRequest`.
pub fn backend(
    pool_id: &str,
    name: &str,
    address: Option<pb::BackendAddress>,
    port: u32,
) -> pb::AddBackendRequest {
    pb::AddBackendRequest {
        pool_id: pool_id.into(),
        name: name.into(),
        address,
        port,
        ..Default::default()
    }
}

/// A load balancer with one pool holding one backend (10.0.0.1:8080).
pub struct Graph {
    /// The load balancer.
    pub lb: pb::LoadBalancer,
    /// Its pool.
    pub pool: pb::Pool,
    /// The pool's backend.
    pub backend: pb::Backend,
}

/// Creates a [`Graph`] in `org` named after `name`.
pub async fn graph(c: &mut Clients, name: &str, org: &str) -> Result<Graph, tonic::Status> {
    let lb = c.lb.create_load_balancer(lb(name, org)).await?.into_inner();
    let pool = c.pool.create_pool(pool(&lb.id, "app")).await?.into_inner();
    let backend = c
        .backend
        .add_backend(backend(&pool.id, "app-1", ip("10.0.0.1"), 8080))
        .await?
        .into_inner();
    Ok(Graph { lb, pool, backend })
}

/// Creates a token and returns its record and secret.
pub async fn token(
    c: &mut Clients,
    name: &str,
    org: &str,
    project: Option<&str>,
    actions: &[&str],
) -> Result<(pb::AccessToken, String), tonic::Status> {
    let r = c
        .access
        .create_token(pb::CreateTokenRequest {
            name: name.into(),
            principal: format!("user-{name}"),
            org_id: org.into(),
            project_id: project.map(Into::into),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let t = r
        .token
        .ok_or_else(|| tonic::Status::internal("CreateTokenResponse without token"))?;
    Ok((t, r.secret))
}
