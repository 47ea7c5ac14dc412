//! VIP allocation from the anycast prefix (`[cluster] vip_pool`) for load balancers created
//! without one. Uniqueness is the VIP index key (`fiberlb/vips/{ip}`), written in the same
//! transaction as the load balancer with an "absent" compare, so two nodes allocating at
//! once cannot both win; deleting the load balancer deletes the key and frees the VIP.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::service::Api;

impl Api {
    /// The lowest free address of the VIP pool, or `None` when no pool is configured.
    pub(super) async fn allocate_vip(&self) -> ApiResult<Option<IpAddr>> {
        let Some(pool) = self.runtime.vip_pool() else {
            return Ok(None);
        };
        let taken: HashSet<IpAddr> = self
            .repo
            .store()
            .range(keys::VIP_PREFIX)
            .await?
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(keys::VIP_PREFIX)?.parse().ok())
            .collect();
        match first_free(pool, &taken) {
            Some(ip) => Ok(Some(ip)),
            None => Err(ApiError::new(
                ErrorCode::VipConflict,
                format!("vip pool {pool} has no free address; give the load balancer a vip"),
            )),
        }
    }
}

/// The lowest host address of `pool` not in `taken`. IPv4 skips the network and broadcast
/// addresses (except in /31 and /32); IPv6 skips the subnet-router anycast address (the
/// all-zero host) except in /127 and /128. Looks at most `taken.len() + 2` candidates.
pub(super) fn first_free(pool: IpNet, taken: &HashSet<IpAddr>) -> Option<IpAddr> {
    match pool {
        IpNet::V4(n) => n.hosts().map(IpAddr::V4).find(|ip| !taken.contains(ip)),
        IpNet::V6(n) => {
            let skip = usize::from(n.prefix_len() < 127);
            n.hosts()
                .skip(skip)
                .map(IpAddr::V6)
                .find(|ip| !taken.contains(ip))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fiberlb_proto::v1 as pb;
    use fiberlb_proto::v1::lb_service_server::LbService;
    use tonic::Request;

    use super::*;
    use crate::runtime::StaticRuntime;
    use crate::store::MemoryStore;

    fn ips(v: &[&str]) -> HashSet<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn lowest_free_host_address() {
        let p: IpNet = "10.200.0.0/30".parse().unwrap();
        assert_eq!(
            first_free(p, &ips(&[])),
            Some("10.200.0.1".parse().unwrap())
        );
        assert_eq!(
            first_free(p, &ips(&["10.200.0.1"])),
            Some("10.200.0.2".parse().unwrap())
        );
        // .0 is the network, .3 the broadcast: a /30 has two VIPs.
        assert_eq!(first_free(p, &ips(&["10.200.0.1", "10.200.0.2"])), None);
        let one: IpNet = "10.200.0.9/32".parse().unwrap();
        assert_eq!(
            first_free(one, &ips(&[])),
            Some("10.200.0.9".parse().unwrap())
        );
        let v6: IpNet = "2001:db8:200::/64".parse().unwrap();
        assert_eq!(
            first_free(v6, &ips(&["2001:db8:200::1"])),
            Some("2001:db8:200::2".parse().unwrap())
        );
    }

    async fn api(pool: &str) -> (Api, String) {
        let store = Arc::new(MemoryStore::new());
        let repo = crate::repo::Repo::new(store.clone());
        let secret = match crate::auth::bootstrap_admin(&repo, None).await.unwrap() {
            crate::auth::BootstrapOutcome::Created { secret } => secret,
            crate::auth::BootstrapOutcome::AlreadyDone => unreachable!("fresh store"),
        };
        let runtime = StaticRuntime {
            vip_pool: Some(pool.parse().unwrap()),
            ..Default::default()
        };
        (Api::new(store, Arc::new(runtime)), secret)
    }

    fn req<T>(secret: &str, body: T) -> Request<T> {
        let mut r = Request::new(body);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {secret}").parse().unwrap());
        r
    }

    fn create(name: &str, vip: Option<&str>) -> pb::CreateLoadBalancerRequest {
        pb::CreateLoadBalancerRequest {
            name: name.into(),
            org_id: "acme".into(),
            vip: vip.map(str::to_owned),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn allocates_unique_vips_and_frees_them_on_delete() {
        let (api, s) = api("10.200.0.0/30").await;
        let a = api
            .create_load_balancer(req(&s, create("a", None)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(a.vip, "10.200.0.1");
        // An explicit VIP takes the next one; allocation skips it.
        let b = api
            .create_load_balancer(req(&s, create("b", Some("10.200.0.2"))))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(b.vip, "10.200.0.2");
        let full = api
            .create_load_balancer(req(&s, create("c", None)))
            .await
            .unwrap_err();
        assert!(full.message().starts_with("VIP_CONFLICT: "), "{full:?}");
        api.delete_load_balancer(req(
            &s,
            pb::DeleteLoadBalancerRequest {
                lb_id: a.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
        let c = api
            .create_load_balancer(req(&s, create("c", None)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(c.vip, "10.200.0.1", "the deleted LB's VIP is free again");
    }

    #[tokio::test]
    async fn concurrent_creates_get_distinct_vips() {
        let (api, s) = api("10.200.0.0/24").await;
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (api, s) = (api.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                api.create_load_balancer(req(&s, create(&format!("lb{i}"), None)))
                    .await
                    .unwrap()
                    .into_inner()
                    .vip
            }));
        }
        let mut vips = HashSet::new();
        for t in tasks {
            assert!(vips.insert(t.await.unwrap()));
        }
        assert_eq!(vips.len(), 6);
    }
}
