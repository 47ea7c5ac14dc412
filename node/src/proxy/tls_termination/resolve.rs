//! Certificate selection by SNI, from tables built once per snapshot.
//!
//! Order, first hit wins:
//! 1. an exact name of the listener's `sni_certificates`;
//! 2. a wildcard pattern (`*.example.com`, exactly one more label) of `sni_certificates`;
//! 3. a certificate of the listener's tenant (same organization, and same project or
//!    organization-wide, the visibility the API enforces for references) that has a private
//!    key and whose own subject names match, exact names before wildcard names, then the one
//!    expiring last. So a certificate uploaded for `api.example.com` is served for that name
//!    without an explicit map entry, and uploading a renewed certificate for a name takes
//!    over from the old one;
//! 4. the default `certificate_id`, also for clients that send no SNI.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use fiberlb_api::model::{Certificate, Listener, TlsConfig};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{keys, TlsBuildError};
use crate::proxy::host_match;

/// The `ResolvesServerCert` of one listener. Lookups allocate one lowercase copy of the
/// SNI name and do no parsing.
pub struct SniResolver {
    sni_exact: HashMap<String, Arc<CertifiedKey>>,
    sni_wildcard: Vec<(String, Arc<CertifiedKey>)>,
    subject_exact: HashMap<String, Arc<CertifiedKey>>,
    subject_wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Parses every certificate the listener can serve. A certificate the listener refers
    /// to (default, SNI map) must be usable; one only found by its subject names is skipped
    /// with a warning when it is not, so one broken upload cannot take a listener down.
    pub(super) fn build(
        listener: &Listener,
        tls: &TlsConfig,
        certs: &HashMap<String, Arc<Certificate>>,
        provider: &CryptoProvider,
    ) -> Result<Self, TlsBuildError> {
        let mut parsed: HashMap<&str, Arc<CertifiedKey>> = HashMap::new();
        let mut referenced = |id: &String, role: String| -> Result<_, TlsBuildError> {
            if let Some(k) = parsed.get(id.as_str()) {
                return Ok(k.clone());
            }
            let (id_ref, cert) =
                certs
                    .get_key_value(id)
                    .ok_or_else(|| TlsBuildError::UnknownCertificate {
                        listener: listener.id.clone(),
                        role,
                        id: id.clone(),
                    })?;
            let key = keys::certified_key(cert, provider)?;
            parsed.insert(id_ref.as_str(), key.clone());
            Ok(key)
        };

        let default = referenced(&tls.certificate_id, "default".into())?;
        let mut sni_exact = HashMap::new();
        let mut sni_wildcard = Vec::new();
        for (pattern, id) in &tls.sni_certificates {
            let key = referenced(id, format!("SNI {pattern}"))?;
            let pattern = pattern.to_ascii_lowercase();
            if pattern.starts_with("*.") {
                sni_wildcard.push((pattern, key));
            } else {
                sni_exact.insert(pattern, key);
            }
        }

        let mut candidates: Vec<&Arc<Certificate>> = certs
            .values()
            .filter(|c| {
                c.private_key_pem.is_some()
                    && !c.subject_names.is_empty()
                    && c.scope.org_id == listener.scope.org_id
                    && (c.scope.project_id.is_none()
                        || c.scope.project_id == listener.scope.project_id)
            })
            .collect();
        candidates.sort_by(|a, b| b.not_after.cmp(&a.not_after).then_with(|| a.id.cmp(&b.id)));
        let mut subject_exact = HashMap::new();
        let mut subject_wildcard: Vec<(String, Arc<CertifiedKey>)> = Vec::new();
        for cert in candidates {
            let key = match parsed.get(cert.id.as_str()) {
                Some(k) => k.clone(),
                None => match keys::certified_key(cert, provider) {
                    Ok(k) => {
                        parsed.insert(cert.id.as_str(), k.clone());
                        k
                    }
                    Err(e) => {
                        tracing::warn!(listener = %listener.id, error = %e,
                            "certificate not usable for SNI by subject name, skipped");
                        continue;
                    }
                },
            };
            for name in &cert.subject_names {
                let name = name.to_ascii_lowercase();
                if name.starts_with("*.") {
                    if !subject_wildcard.iter().any(|(p, _)| *p == name) {
                        subject_wildcard.push((name, key.clone()));
                    }
                } else {
                    subject_exact.entry(name).or_insert_with(|| key.clone());
                }
            }
        }
        Ok(SniResolver {
            sni_exact,
            sni_wildcard,
            subject_exact,
            subject_wildcard,
            default,
        })
    }

    /// The key served for `sni` (`None` = the client sent no SNI).
    pub fn lookup(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(sni) = sni else {
            return &self.default;
        };
        let sni = sni.strip_suffix('.').unwrap_or(sni).to_ascii_lowercase();
        self.sni_exact
            .get(&sni)
            .or_else(|| find_wildcard(&self.sni_wildcard, &sni))
            .or_else(|| self.subject_exact.get(&sni))
            .or_else(|| find_wildcard(&self.subject_wildcard, &sni))
            .unwrap_or(&self.default)
    }
}

fn find_wildcard<'a>(
    table: &'a [(String, Arc<CertifiedKey>)],
    sni: &str,
) -> Option<&'a Arc<CertifiedKey>> {
    table
        .iter()
        .find(|(p, _)| host_match::matches(p, sni))
        .map(|(_, k)| k)
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(client_hello.server_name()).clone())
    }
}

impl fmt::Debug for SniResolver {
    /// Names only: keys stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("sni_exact", &self.sni_exact.keys().collect::<Vec<_>>())
            .field(
                "sni_wildcard",
                &self.sni_wildcard.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field(
                "subject_exact",
                &self.subject_exact.keys().collect::<Vec<_>>(),
            )
            .field(
                "subject_wildcard",
                &self
                    .subject_wildcard
                    .iter()
                    .map(|(p, _)| p)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}
