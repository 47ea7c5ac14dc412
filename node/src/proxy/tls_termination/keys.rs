//! PEM → rustls objects, with a process-wide cache so an unchanged certificate is not
//! re-parsed (private key loading is the expensive part) on every snapshot rebuild.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use fiberlb_api::model::Certificate;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};

use super::TlsBuildError;

/// Parsed keys by SHA-256 of (chain PEM, key PEM). Held weakly: a key lives as long as a
/// config uses it, and dead entries are swept on each insert.
static KEY_CACHE: Mutex<Option<HashMap<[u8; 32], Weak<CertifiedKey>>>> = Mutex::new(None);

/// The certificate chain and private key of `cert` as a rustls key, checked to match.
pub(super) fn certified_key(
    cert: &Certificate,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsBuildError> {
    let key_pem =
        cert.private_key_pem
            .as_deref()
            .ok_or_else(|| TlsBuildError::MissingPrivateKey {
                id: cert.id.clone(),
                name: cert.name.clone(),
            })?;
    let mut h = Sha256::new();
    h.update((cert.certificate_pem.len() as u64).to_be_bytes());
    h.update(cert.certificate_pem.as_bytes());
    h.update(key_pem.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    if let Some(hit) = lock()
        .as_ref()
        .and_then(|m| m.get(&digest))
        .and_then(Weak::upgrade)
    {
        return Ok(hit);
    }

    let chain = chain_ders(cert)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsBuildError::invalid(cert, format!("private_key_pem: {e}")))?;
    let ck = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| TlsBuildError::invalid(cert, format!("certificate/key: {e}")))?;
    let ck = Arc::new(ck);
    let mut guard = lock();
    let map = guard.get_or_insert_with(HashMap::new);
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(digest, Arc::downgrade(&ck));
    Ok(ck)
}

/// Every certificate of a CA bundle as trust anchors, and their DER (for the resumption
/// context).
pub(super) fn ca_roots(ca: &Certificate) -> Result<(RootCertStore, Vec<Vec<u8>>), TlsBuildError> {
    let ders = chain_ders(ca)?;
    let mut roots = RootCertStore::empty();
    for (i, der) in ders.iter().enumerate() {
        roots
            .add(der.clone())
            .map_err(|e| TlsBuildError::invalid(ca, format!("CA certificate {i}: {e}")))?;
    }
    Ok((roots, ders.into_iter().map(|d| d.to_vec()).collect()))
}

/// All CERTIFICATE blocks of `cert.certificate_pem`; at least one.
fn chain_ders(cert: &Certificate) -> Result<Vec<CertificateDer<'static>>, TlsBuildError> {
    let ders = CertificateDer::pem_slice_iter(cert.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsBuildError::invalid(cert, format!("certificate_pem: {e}")))?;
    if ders.is_empty() {
        return Err(TlsBuildError::invalid(
            cert,
            "certificate_pem: no CERTIFICATE block",
        ));
    }
    Ok(ders)
}

fn lock() -> std::sync::MutexGuard<'static, Option<HashMap<[u8; 32], Weak<CertifiedKey>>>> {
    // A panic while holding the lock cannot leave the map inconsistent (single inserts).
    KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner())
}
