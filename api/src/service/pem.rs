//! Parsing and checking uploaded certificates: the PEM chain must parse, the leaf's names
//! and validity are extracted, and a given private key must match the leaf.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult, ErrorCode};

/// Largest accepted PEM input (chain or key).
const MAX_PEM_BYTES: usize = 256 * 1024;

/// What an uploaded chain says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedCert {
    pub subject_names: Vec<String>,
    pub not_before: u64,
    pub not_after: u64,
    pub fingerprint_sha256: String,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidCertificate, m)
}

/// Parses a chain and, when given, checks that the key belongs to its leaf.
pub(crate) fn parse(chain_pem: &str, key_pem: Option<&str>) -> ApiResult<ParsedCert> {
    if chain_pem.len() > MAX_PEM_BYTES || key_pem.is_some_and(|k| k.len() > MAX_PEM_BYTES) {
        return Err(bad("PEM input larger than 256 KiB"));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("certificate_pem: {e:?}")))?;
    let leaf = certs
        .first()
        .ok_or_else(|| bad("certificate_pem: no CERTIFICATE block"))?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| bad(format!("certificate_pem: leaf is not X.509: {e}")))?;
    for (i, c) in certs.iter().enumerate().skip(1) {
        x509_parser::parse_x509_certificate(c).map_err(|e| {
            bad(format!(
                "certificate_pem: certificate {i} is not X.509: {e}"
            ))
        })?;
    }
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            x509.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let to_ms = |t: x509_parser::time::ASN1Time| {
        u64::try_from(t.timestamp())
            .unwrap_or(0)
            .saturating_mul(1000)
    };
    let parsed = ParsedCert {
        subject_names: names,
        not_before: to_ms(x509.validity().not_before),
        not_after: to_ms(x509.validity().not_after),
        fingerprint_sha256: hex::encode(Sha256::digest(leaf.as_ref())),
    };
    if let Some(key_pem) = key_pem {
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| bad(format!("private_key_pem: {e:?}")))?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| bad(format!("private_key_pem: unsupported key: {e}")))?;
        let ck = rustls::sign::CertifiedKey::new(certs, signing);
        ck.keys_match().map_err(|e| {
            bad(format!(
                "private_key_pem does not match the leaf certificate: {e}"
            ))
        })?;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_mismatching_keys() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example.com".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example.com".into()]).unwrap();
        let pa = parse(&a.cert.pem(), Some(&a.signing_key.serialize_pem())).unwrap();
        assert_eq!(pa.subject_names, vec!["a.example.com"]);
        assert!(pa.not_after > pa.not_before);
        let err = parse(&a.cert.pem(), Some(&b.signing_key.serialize_pem())).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidCertificate);
        assert!(parse("garbage", None).is_err());
        assert!(parse(&a.cert.pem(), Some("not a key")).is_err());
        assert!(
            parse(&a.cert.pem(), None).is_ok(),
            "a CA bundle needs no key"
        );
    }
}
