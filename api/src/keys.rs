//! The store key schema (spec §7.1), in one place.
//!
//! Deviations from the spec, and why: project indexes include the org
//! (`by-project/{org}/{project}/…`) because project ids are only unique within an org;
//! names are indexed for every object kind because `apply` addresses objects by name;
//! `gen/{id}` keys are bumped by every write that adds or removes a child or a reference,
//! so deleting a parent can compare "nothing was added since I looked" in its transaction.

/// Root of every FiberLB key.
pub const ROOT: &str = "fiberlb/";

/// `fiberlb/lbs/{id}`
pub fn lb(id: &str) -> String {
    format!("fiberlb/lbs/{id}")
}
/// Prefix of all load balancer objects (ids only; indexes live under `by-…`).
pub const LB_PREFIX: &str = "fiberlb/lbs/";
/// `fiberlb/lbs/by-name/{org}[/{project}]/{name}`
pub fn lb_by_name(org: &str, project: Option<&str>, name: &str) -> String {
    match project {
        Some(p) => format!("fiberlb/lbs/by-name/{org}/{p}/{name}"),
        None => format!("fiberlb/lbs/by-name/{org}/{name}"),
    }
}
/// `fiberlb/lbs/by-org/{org}/{id}`
pub fn lb_by_org(org: &str, id: &str) -> String {
    format!("fiberlb/lbs/by-org/{org}/{id}")
}
/// Prefix of one org's load balancers.
pub fn lb_by_org_prefix(org: &str) -> String {
    format!("fiberlb/lbs/by-org/{org}/")
}
/// `fiberlb/lbs/by-project/{org}/{project}/{id}`
pub fn lb_by_project(org: &str, project: &str, id: &str) -> String {
    format!("fiberlb/lbs/by-project/{org}/{project}/{id}")
}
/// Prefix of one project's load balancers.
pub fn lb_by_project_prefix(org: &str, project: &str) -> String {
    format!("fiberlb/lbs/by-project/{org}/{project}/")
}
/// `fiberlb/vips/{ip}`: a VIP is unique fleet-wide.
pub fn vip(ip: &std::net::IpAddr) -> String {
    format!("fiberlb/vips/{ip}")
}
/// Prefix of every VIP key (the VIPs in use, fleet-wide).
pub const VIP_PREFIX: &str = "fiberlb/vips/";

/// `fiberlb/listeners/{id}`
pub fn listener(id: &str) -> String {
    format!("fiberlb/listeners/{id}")
}
/// `fiberlb/listeners/by-lb/{lb}/{id}`
pub fn listener_by_lb(lb: &str, id: &str) -> String {
    format!("fiberlb/listeners/by-lb/{lb}/{id}")
}
/// Prefix of one load balancer's listeners.
pub fn listener_by_lb_prefix(lb: &str) -> String {
    format!("fiberlb/listeners/by-lb/{lb}/")
}
/// `fiberlb/listeners/by-port/{lb}/{port}` (TCP family) or `…/{port}/udp`.
pub fn listener_by_port(lb: &str, port: u16, udp: bool) -> String {
    if udp {
        format!("fiberlb/listeners/by-port/{lb}/{port}/udp")
    } else {
        format!("fiberlb/listeners/by-port/{lb}/{port}")
    }
}
/// `fiberlb/listeners/by-name/{lb}/{name}`
pub fn listener_by_name(lb: &str, name: &str) -> String {
    format!("fiberlb/listeners/by-name/{lb}/{name}")
}

/// `fiberlb/pools/{id}`
pub fn pool(id: &str) -> String {
    format!("fiberlb/pools/{id}")
}
/// `fiberlb/pools/by-lb/{lb}/{id}`
pub fn pool_by_lb(lb: &str, id: &str) -> String {
    format!("fiberlb/pools/by-lb/{lb}/{id}")
}
/// Prefix of one load balancer's pools.
pub fn pool_by_lb_prefix(lb: &str) -> String {
    format!("fiberlb/pools/by-lb/{lb}/")
}
/// `fiberlb/pools/by-name/{lb}/{name}`
pub fn pool_by_name(lb: &str, name: &str) -> String {
    format!("fiberlb/pools/by-name/{lb}/{name}")
}

/// `fiberlb/backends/{id}`
pub fn backend(id: &str) -> String {
    format!("fiberlb/backends/{id}")
}
/// `fiberlb/backends/by-pool/{pool}/{id}`
pub fn backend_by_pool(pool: &str, id: &str) -> String {
    format!("fiberlb/backends/by-pool/{pool}/{id}")
}
/// Prefix of one pool's backends.
pub fn backend_by_pool_prefix(pool: &str) -> String {
    format!("fiberlb/backends/by-pool/{pool}/")
}
/// `fiberlb/backends/by-name/{pool}/{name}`
pub fn backend_by_name(pool: &str, name: &str) -> String {
    format!("fiberlb/backends/by-name/{pool}/{name}")
}
/// `fiberlb/backends/by-address/{hash}/{id}`: the hash covers address and port.
pub fn backend_by_address(address_hash: &str, id: &str) -> String {
    format!("fiberlb/backends/by-address/{address_hash}/{id}")
}

/// `fiberlb/certs/{id}`
pub fn cert(id: &str) -> String {
    format!("fiberlb/certs/{id}")
}
/// `fiberlb/certs/by-name/{org}[/{project}]/{name}`
pub fn cert_by_name(org: &str, project: Option<&str>, name: &str) -> String {
    match project {
        Some(p) => format!("fiberlb/certs/by-name/{org}/{p}/{name}"),
        None => format!("fiberlb/certs/by-name/{org}/{name}"),
    }
}
/// `fiberlb/certs/by-org/{org}/{id}`
pub fn cert_by_org(org: &str, id: &str) -> String {
    format!("fiberlb/certs/by-org/{org}/{id}")
}
/// Prefix of one org's certificates.
pub fn cert_by_org_prefix(org: &str) -> String {
    format!("fiberlb/certs/by-org/{org}/")
}
/// `fiberlb/certs/refs/{cert}/{listener}`: listeners using a certificate.
pub fn cert_ref(cert: &str, listener: &str) -> String {
    format!("fiberlb/certs/refs/{cert}/{listener}")
}
/// Prefix of one certificate's users.
pub fn cert_ref_prefix(cert: &str) -> String {
    format!("fiberlb/certs/refs/{cert}/")
}

/// `fiberlb/tokens/{id}`
pub fn token(id: &str) -> String {
    format!("fiberlb/tokens/{id}")
}
/// Prefix of all token objects and indexes.
pub const TOKEN_PREFIX: &str = "fiberlb/tokens/";
/// `fiberlb/tokens/by-hash/{sha256}` → token id.
pub fn token_by_hash(sha: &str) -> String {
    format!("fiberlb/tokens/by-hash/{sha}")
}
/// Set once, when the first node creates the bootstrap admin token.
pub const BOOTSTRAP: &str = "fiberlb/bootstrap";

/// `fiberlb/gen/{id}`: bumped whenever children of or references to `id` change.
pub fn gen(id: &str) -> String {
    format!("fiberlb/gen/{id}")
}
