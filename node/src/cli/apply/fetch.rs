//! Reading the server's current state for `apply` and `export`.

use std::collections::{BTreeSet, HashMap};

use fiberlb_proto::v1 as pv;

use super::current::CurrentLb;
use crate::cli::args::collect_all;
use crate::cli::conn::Api;
use crate::cli::document::LoadBalancerDoc;
use crate::cli::error::CliError;

/// The load balancer named `name` in exactly (org, project), if any.
pub async fn find_lb(
    api: &Api,
    org: &str,
    project: Option<&str>,
    name: &str,
) -> Result<Option<pv::LoadBalancer>, CliError> {
    let lbs = list_lbs(api, org, project, Some(name)).await?;
    Ok(lbs.into_iter().find(|lb| {
        lb.name == name && lb.project_id.as_deref().filter(|p| !p.is_empty()) == project
    }))
}

/// Every load balancer of an org (optionally one project), `name_filter` a prefix.
pub async fn list_lbs(
    api: &Api,
    org: &str,
    project: Option<&str>,
    name_filter: Option<&str>,
) -> Result<Vec<pv::LoadBalancer>, CliError> {
    let client = api.lb.clone();
    Ok(collect_all(|page_token| {
        let mut c = client.clone();
        let req = pv::ListLoadBalancersRequest {
            org_id: org.to_string(),
            project_id: project.map(String::from),
            name_filter: name_filter.map(String::from),
            status_filter: None,
            limit: 0,
            page_token,
        };
        async move {
            let r = c.list_load_balancers(req).await?.into_inner();
            Ok((r.load_balancers, r.next_page_token, r.total_count))
        }
    })
    .await?)
}

/// The load balancer's pools with their backends, and its listeners.
pub async fn load_current(
    api: &Api,
    lb: &pv::LoadBalancer,
    certs: &mut CertNames,
) -> Result<CurrentLb, CliError> {
    let pool_client = api.pool.clone();
    let pools = collect_all(|page_token| {
        let mut c = pool_client.clone();
        let req = pv::ListPoolsRequest {
            lb_id: lb.id.clone(),
            limit: 0,
            page_token,
            name_filter: None,
        };
        async move {
            let r = c.list_pools(req).await?.into_inner();
            Ok((r.pools, r.next_page_token, r.total_count))
        }
    })
    .await?;
    let mut with_backends = Vec::with_capacity(pools.len());
    for pool in pools {
        let backend_client = api.backend.clone();
        let backends = collect_all(|page_token| {
            let mut c = backend_client.clone();
            let req = pv::ListBackendsRequest {
                pool_id: pool.id.clone(),
                healthy_only: None,
                limit: 0,
                page_token,
                name_filter: None,
            };
            async move {
                let r = c.list_backends(req).await?.into_inner();
                Ok((r.backends, r.next_page_token, r.total_count))
            }
        })
        .await?;
        with_backends.push((pool, backends));
    }
    let listener_client = api.listener.clone();
    let listeners = collect_all(|page_token| {
        let mut c = listener_client.clone();
        let req = pv::ListListenersRequest {
            lb_id: lb.id.clone(),
            protocol_filter: None,
            limit: 0,
            page_token,
            name_filter: None,
        };
        async move {
            let r = c.list_listeners(req).await?.into_inner();
            Ok((r.listeners, r.next_page_token, r.total_count))
        }
    })
    .await?;
    for t in listeners.iter().filter_map(|l| l.tls_config.as_ref()) {
        let ids = std::iter::once(&t.certificate_id)
            .chain(t.sni_certificates.values())
            .chain(t.client_ca_certificate_id.as_ref());
        for id in ids {
            certs.learn(api, id).await?;
        }
    }
    Ok(CurrentLb::from_proto(
        lb,
        &with_backends,
        &listeners,
        &certs.by_id,
    ))
}

/// Certificate id → name, fetched once per id.
#[derive(Debug, Default)]
pub struct CertNames {
    /// Known names.
    pub by_id: HashMap<String, String>,
}

impl CertNames {
    async fn learn(&mut self, api: &Api, id: &str) -> Result<(), CliError> {
        if id.is_empty() || self.by_id.contains_key(id) {
            return Ok(());
        }
        let req = pv::GetCertificateRequest {
            certificate_id: id.to_string(),
        };
        match api.cert.clone().get_certificate(req).await {
            Ok(c) => {
                self.by_id.insert(id.to_string(), c.into_inner().name);
            }
            // A dangling reference is shown as the id; it is not this command's to fix.
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(s.into()),
        }
        Ok(())
    }
}

/// Certificate name → id for every certificate the document's load balancer names. A
/// certificate of the load balancer's project is preferred over an org-level one of the
/// same name. Fails, before anything is changed, on a name that does not exist.
pub async fn resolve_certs(
    api: &Api,
    lb: &LoadBalancerDoc,
) -> Result<HashMap<String, String>, CliError> {
    let mut names = BTreeSet::new();
    for t in lb.listeners.iter().filter_map(|l| l.tls.as_ref()) {
        names.extend(
            t.certificate
                .iter()
                .chain(t.client_ca_certificate.iter())
                .filter(|n| !n.is_empty())
                .cloned(),
        );
        names.extend(t.sni_certificates.iter().flat_map(|m| m.values().cloned()));
    }
    let mut out = HashMap::new();
    for name in names {
        // Listing by org alone may or may not include project certificates: ask both ways.
        let mut certs = Vec::new();
        let scopes = if lb.project_id.is_some() {
            vec![lb.project_id.clone(), None]
        } else {
            vec![None]
        };
        for project in scopes {
            for c in list_certs(api, &lb.org_id, project, &name).await? {
                if !certs.iter().any(|k: &pv::Certificate| k.id == c.id) {
                    certs.push(c);
                }
            }
        }
        let same_name: Vec<&pv::Certificate> = certs.iter().filter(|c| c.name == name).collect();
        let scope = |c: &&pv::Certificate| c.project_id.clone().filter(|p| !p.is_empty());
        let found = same_name
            .iter()
            .find(|c| lb.project_id.is_some() && scope(c) == lb.project_id)
            .or_else(|| same_name.iter().find(|c| scope(c).is_none()))
            .or(if same_name.len() == 1 {
                same_name.first()
            } else {
                None
            });
        match found {
            Some(c) => {
                out.insert(name, c.id.clone());
            }
            None => {
                return Err(CliError::invalid(format!(
                    "load balancer {}: certificate {name:?} not found in org {} (upload it with `fiberlb cert create`)",
                    lb.name, lb.org_id
                )))
            }
        }
    }
    Ok(out)
}

async fn list_certs(
    api: &Api,
    org: &str,
    project: Option<String>,
    name: &str,
) -> Result<Vec<pv::Certificate>, CliError> {
    let client = api.cert.clone();
    Ok(collect_all(|page_token| {
        let mut c = client.clone();
        let req = pv::ListCertificatesRequest {
            org_id: org.to_string(),
            project_id: project.clone(),
            name_filter: Some(name.to_string()),
            limit: 0,
            page_token,
        };
        async move {
            let r = c.list_certificates(req).await?.into_inner();
            Ok((r.certificates, r.next_page_token, r.total_count))
        }
    })
    .await?)
}
