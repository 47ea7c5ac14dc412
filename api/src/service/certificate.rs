//! `CertificateService`: certificate chains and private keys (keys are write-only).

use fiberlb_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::index;
use super::page::{name_key, paginate};
use super::{audited, pem, reply, Api};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::keys;
use crate::model::*;
use crate::repo::{check_revision, contended, not_found, MAX_ATTEMPTS};
use crate::store::{Compare, Txn};
use crate::validate;

impl Api {
    async fn cert_for(&self, p: &Principal, id: &str, action: &str) -> ApiResult<Certificate> {
        let c: Certificate = self.repo.get(id).await?;
        p.authorize(action, &c.scope, || not_found::<Certificate>(id))?;
        Ok(c)
    }

    async fn create_cert(
        &self,
        p: &Principal,
        r: pb::CreateCertificateRequest,
    ) -> ApiResult<(pb::Certificate, String)> {
        validate::object_name("name", &r.name)?;
        validate::tenant_id("org_id", &r.org_id)?;
        if let Some(pj) = &r.project_id {
            validate::tenant_id("project_id", pj)?;
        }
        let scope = Scope {
            org_id: r.org_id.clone(),
            project_id: r.project_id.clone(),
        };
        p.authorize_in("fiberlb:certificates:create", &scope)?;
        let key = Some(r.private_key_pem.clone()).filter(|k| !k.trim().is_empty());
        let parsed = pem::parse(&r.certificate_pem, key.as_deref())?;
        let now = now_ms();
        let mut c = Certificate {
            id: new_id(),
            name: r.name.clone(),
            scope,
            certificate_pem: r.certificate_pem.clone(),
            private_key_pem: key,
            subject_names: parsed.subject_names,
            not_before: parsed.not_before,
            not_after: parsed.not_after,
            fingerprint_sha256: parsed.fingerprint_sha256,
            created_at: now,
            updated_at: now,
            revision: 0,
        };
        for _ in 0..MAX_ATTEMPTS {
            let name_key =
                keys::cert_by_name(&c.scope.org_id, c.scope.project_id.as_deref(), &c.name);
            if self.repo.index(&name_key).await?.is_some() {
                return Err(ApiError::new(
                    ErrorCode::CertificateAlreadyExists,
                    format!(
                        "a certificate named {} already exists in {}",
                        c.name,
                        c.scope.path()
                    ),
                ));
            }
            if let Some(rev) = self.repo.commit(index::write(Txn::new(), None, &c)).await? {
                c.revision = rev;
                let path = format!("{}/certificate/{}", c.scope.path(), c.id);
                return Ok((c.to_proto(), path));
            }
        }
        Err(contended("create certificate"))
    }

    async fn update_cert(
        &self,
        p: &Principal,
        r: pb::UpdateCertificateRequest,
    ) -> ApiResult<(pb::Certificate, String)> {
        let key = Some(r.private_key_pem.clone()).filter(|k| !k.trim().is_empty());
        let parsed = pem::parse(&r.certificate_pem, key.as_deref())?;
        for _ in 0..MAX_ATTEMPTS {
            let old = self
                .cert_for(p, &r.certificate_id, "fiberlb:certificates:update")
                .await?;
            check_revision(&old, r.revision)?;
            if old.private_key_pem.is_some() && key.is_none() {
                return Err(ApiError::invalid(
                    "private_key_pem",
                    "required: this certificate is used with its key",
                ));
            }
            let mut c = old.clone();
            c.certificate_pem = r.certificate_pem.clone();
            c.private_key_pem = key.clone();
            c.subject_names = parsed.subject_names.clone();
            c.not_before = parsed.not_before;
            c.not_after = parsed.not_after;
            c.fingerprint_sha256 = parsed.fingerprint_sha256.clone();
            c.updated_at = now_ms();
            if let Some(rev) = self
                .repo
                .commit(index::write(Txn::new(), Some(&old), &c))
                .await?
            {
                c.revision = rev;
                let path = format!("{}/certificate/{}", c.scope.path(), c.id);
                return Ok((c.to_proto(), path));
            }
        }
        Err(contended("update certificate"))
    }

    async fn delete_cert(
        &self,
        p: &Principal,
        r: pb::DeleteCertificateRequest,
    ) -> ApiResult<(pb::DeleteCertificateResponse, String)> {
        for _ in 0..MAX_ATTEMPTS {
            let c = self
                .cert_for(p, &r.certificate_id, "fiberlb:certificates:delete")
                .await?;
            check_revision(&c, r.revision)?;
            let gen_rev = self.repo.key_revision(&keys::gen(&c.id)).await?;
            let users = self
                .repo
                .store()
                .range(&keys::cert_ref_prefix(&c.id))
                .await?;
            if let Some(kv) = users.first() {
                let listener = kv.key.rsplit('/').next().unwrap_or_default().to_string();
                return Err(ApiError::new(
                    ErrorCode::CertificateInUse,
                    format!(
                        "certificate {} is used by listener {listener} ({} listener(s) in all)",
                        c.name,
                        users.len()
                    ),
                ));
            }
            let txn = index::delete(
                Txn::new().when(Compare::revision(keys::gen(&c.id), gen_rev)),
                &c,
            );
            if self.repo.commit(txn).await?.is_some() {
                let path = format!("{}/certificate/{}", c.scope.path(), c.id);
                return Ok((
                    pb::DeleteCertificateResponse {
                        certificate_id: c.id,
                    },
                    path,
                ));
            }
        }
        Err(contended("delete certificate"))
    }

    async fn list_certs(
        &self,
        p: &Principal,
        r: pb::ListCertificatesRequest,
    ) -> ApiResult<pb::ListCertificatesResponse> {
        p.require("fiberlb:certificates:list")?;
        let org = p.list_org(&r.org_id)?;
        let items: Vec<Certificate> = self
            .repo
            .list_by_index::<Certificate>(&keys::cert_by_org_prefix(&org))
            .await?
            .into_iter()
            .filter(|c| p.sees(&c.scope, true))
            .filter(|c| r.project_id.is_none() || c.scope.project_id == r.project_id)
            .filter(|c| {
                r.name_filter
                    .as_deref()
                    .is_none_or(|f| c.name.starts_with(f))
            })
            .collect();
        let page = paginate(items, |c| name_key(&c.name, &c.id), r.limit, &r.page_token)?;
        Ok(pb::ListCertificatesResponse {
            certificates: page.items.iter().map(Certificate::to_proto).collect(),
            next_page_token: page.next_page_token,
            total_count: page.total_count,
        })
    }
}

#[tonic::async_trait]
impl pb::certificate_service_server::CertificateService for Api {
    async fn create_certificate(
        &self,
        req: Request<pb::CreateCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("org/{}/certificate/{}", r.org_id, r.name);
        audited(
            &p,
            "fiberlb:certificates:create",
            &fallback,
            self.create_cert(&p, r),
        )
        .await
    }

    async fn get_certificate(
        &self,
        req: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let p = self.principal(&req).await?;
        let id = req.into_inner().certificate_id;
        reply(
            self.cert_for(&p, &id, "fiberlb:certificates:get")
                .await
                .map(|c| c.to_proto()),
        )
    }

    async fn update_certificate(
        &self,
        req: Request<pb::UpdateCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("certificate/{}", r.certificate_id);
        audited(
            &p,
            "fiberlb:certificates:update",
            &fallback,
            self.update_cert(&p, r),
        )
        .await
    }

    async fn delete_certificate(
        &self,
        req: Request<pb::DeleteCertificateRequest>,
    ) -> Result<Response<pb::DeleteCertificateResponse>, Status> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let fallback = format!("certificate/{}", r.certificate_id);
        audited(
            &p,
            "fiberlb:certificates:delete",
            &fallback,
            self.delete_cert(&p, r),
        )
        .await
    }

    async fn list_certificates(
        &self,
        req: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let p = self.principal(&req).await?;
        reply(self.list_certs(&p, req.into_inner()).await)
    }
}
