//! TLS termination for HTTPS listeners: one `rustls::ServerConfig` per listener, built
//! from the listener's `TlsConfig` and the snapshot's certificates whenever a snapshot is
//! built (off the hot path), so a certificate updated through the API is served to every
//! new handshake without a restart while existing connections keep the config they
//! started with.
//!
//! What a config does:
//! - ring provider only, limited to the listener's cipher suites when it names any, and to
//!   TLS 1.3 (or 1.2 and 1.3) by `min_version`, else `[proxy.tls] default_min_version`;
//! - certificate by SNI (`resolve`): exact `sni_certificates` entries, then wildcard
//!   entries, then any keyed certificate of the listener's tenant whose own subject names
//!   match, then the default `certificate_id` (also for clients sending no SNI);
//! - ALPN `h2` then `http/1.1`;
//! - client certificates (None / Optional / Required) verified against the CA bundle of
//!   `client_ca_certificate_id`; [`peer_subject`] gives the verified subject for the
//!   `X-Client-Cert-Subject` header;
//! - session resumption by a session-ID cache and stateless tickets whose keys are shared
//!   by the whole process (`resumption`), so a rebuild keeps sessions resumable.
//!
//! It does not accept connections or speak HTTP: the HTTP server wraps accepted sockets
//! with `tokio_rustls::TlsAcceptor::from(termination.config.clone())`.

mod keys;
mod resolve;
mod resumption;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;

use std::collections::HashMap;
use std::sync::Arc;

use fiberlb_api::model::{Certificate, ClientAuthMode, Listener, TlsConfig, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use sha2::{Digest, Sha256};

use crate::settings::{self, ProxyTlsSettings};

/// The TLS side of one HTTPS listener, ready for an acceptor.
#[derive(Debug, Clone)]
pub struct TlsTermination {
    /// Shared by every connection accepted on this listener under one snapshot.
    pub config: Arc<ServerConfig>,
}

/// Why a listener's TLS configuration could not be built. Every variant names the listener
/// or the certificate at fault, because the operator has to fix that object.
#[derive(Debug, thiserror::Error)]
pub enum TlsBuildError {
    /// The listener has no `tls` section.
    #[error("listener {listener}: no TLS configuration")]
    NoTlsConfig {
        /// Listener id.
        listener: String,
    },
    /// A certificate id the listener refers to is not in the snapshot.
    #[error("listener {listener}: {role} certificate {id} does not exist")]
    UnknownCertificate {
        /// Listener id.
        listener: String,
        /// Which reference: `default`, `SNI <pattern>` or `client CA`.
        role: String,
        /// The missing certificate id.
        id: String,
    },
    /// A certificate served to clients has no private key.
    #[error("certificate {name} ({id}): no private key")]
    MissingPrivateKey {
        /// Certificate id.
        id: String,
        /// Certificate name.
        name: String,
    },
    /// A certificate's PEM, key or CA bundle is unusable.
    #[error("certificate {name} ({id}): {reason}")]
    InvalidCertificate {
        /// Certificate id.
        id: String,
        /// Certificate name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Client certificates are asked for but no CA bundle is configured.
    #[error("listener {listener}: client_auth {mode:?} needs a client_ca_certificate_id")]
    MissingClientCa {
        /// Listener id.
        listener: String,
        /// The configured mode.
        mode: ClientAuthMode,
    },
    /// A cipher suite name the ring provider does not know.
    #[error("listener {listener}: unknown cipher suite {name}")]
    UnknownCipherSuite {
        /// Listener id.
        listener: String,
        /// The name as configured.
        name: String,
    },
    /// rustls refused the combination (e.g. only TLS 1.2 suites with `min_version` tls13),
    /// or the system random source failed.
    #[error("listener {listener}: {source}")]
    Rustls {
        /// Listener id.
        listener: String,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
}

impl TlsBuildError {
    /// An [`TlsBuildError::InvalidCertificate`] for `cert`.
    fn invalid(cert: &Certificate, reason: impl Into<String>) -> Self {
        TlsBuildError::InvalidCertificate {
            id: cert.id.clone(),
            name: cert.name.clone(),
            reason: reason.into(),
        }
    }
}

/// ALPN protocols offered, most preferred first: h2 multiplexes, http/1.1 is the fallback.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Builds the server config of an HTTPS listener. `certs` is the snapshot's certificate map
/// (id → certificate); every key is parsed here once, never during a handshake (and an
/// unchanged certificate is not even re-parsed across rebuilds). `defaults` gives the min
/// version when the listener sets none, the size of the session-ID cache (one cache for the
/// whole process, partitioned per listener) and the session/ticket lifetime. 0-RTT early
/// data stays off: it would be replayable towards backends.
pub fn build(
    listener: &Listener,
    certs: &HashMap<String, Arc<Certificate>>,
    defaults: &ProxyTlsSettings,
) -> Result<TlsTermination, TlsBuildError> {
    let tls = listener
        .tls
        .as_ref()
        .ok_or_else(|| TlsBuildError::NoTlsConfig {
            listener: listener.id.clone(),
        })?;
    let rustls_err = |source| TlsBuildError::Rustls {
        listener: listener.id.clone(),
        source,
    };
    let provider = Arc::new(provider_for(listener, tls)?);
    let resolver = resolve::SniResolver::build(listener, tls, certs, &provider)?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(tls, defaults))
        .map_err(rustls_err)?;
    let (builder, ca_ders) = match tls.client_auth {
        ClientAuthMode::None => (builder.with_no_client_auth(), Vec::new()),
        mode => {
            let ca = client_ca(listener, tls, certs, mode)?;
            let (roots, ders) = keys::ca_roots(ca)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if mode == ClientAuthMode::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsBuildError::invalid(ca, format!("client CA bundle: {e}")))?;
            (builder.with_client_cert_verifier(verifier), ders)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();

    let context = resumption_context(listener, tls.client_auth, &ca_ders);
    let lifetime = u32::try_from(defaults.session_timeout_seconds).unwrap_or(u32::MAX);
    config.session_storage =
        resumption::session_store(defaults.session_cache_size, context, lifetime);
    config.ticketer = resumption::ticketer(context, lifetime).map_err(rustls_err)?;
    Ok(TlsTermination {
        config: Arc::new(config),
    })
}

/// The subject DN of the client certificate verified on `conn` (`CN=client-1, O=Acme`), or
/// `None` when the client sent none. Control characters are escaped as `\XX` so the value
/// is always a valid HTTP header value. Parses the certificate: call it once per
/// connection, not per request.
pub fn peer_subject(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let mut out = String::new();
    for c in cert.subject().to_string().chars() {
        if c.is_control() {
            out.push_str(&format!("\\{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The ring provider, restricted to the listener's suites (in its order) when it names any.
fn provider_for(listener: &Listener, tls: &TlsConfig) -> Result<CryptoProvider, TlsBuildError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !tls.cipher_suites.is_empty() {
        let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
        for name in &tls.cipher_suites {
            let suite = rustls::crypto::ring::ALL_CIPHER_SUITES
                .iter()
                .find(|s| {
                    s.suite()
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .ok_or_else(|| TlsBuildError::UnknownCipherSuite {
                    listener: listener.id.clone(),
                    name: name.clone(),
                })?;
            if !chosen.contains(suite) {
                chosen.push(*suite);
            }
        }
        provider.cipher_suites = chosen;
    }
    Ok(provider)
}

/// A static, as the version objects are statics (no constant promotion of their address).
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn protocol_versions(
    tls: &TlsConfig,
    defaults: &ProxyTlsSettings,
) -> &'static [&'static SupportedProtocolVersion] {
    let tls13_only = match tls.min_version {
        Some(v) => v == TlsVersion::Tls13,
        None => defaults.default_min_version == settings::TlsVersion::Tls13,
    };
    if tls13_only {
        TLS13_ONLY
    } else {
        rustls::ALL_VERSIONS
    }
}

/// The CA bundle certificate verifying client certificates.
fn client_ca<'a>(
    listener: &Listener,
    tls: &TlsConfig,
    certs: &'a HashMap<String, Arc<Certificate>>,
    mode: ClientAuthMode,
) -> Result<&'a Certificate, TlsBuildError> {
    let id =
        tls.client_ca_certificate_id
            .as_ref()
            .ok_or_else(|| TlsBuildError::MissingClientCa {
                listener: listener.id.clone(),
                mode,
            })?;
    certs
        .get(id)
        .map(|c| &**c)
        .ok_or_else(|| TlsBuildError::UnknownCertificate {
            listener: listener.id.clone(),
            role: "client CA".into(),
            id: id.clone(),
        })
}

/// What a resumed session must agree on with the config resuming it. rustls does not
/// re-check client authentication on resumption, so a ticket from a listener without mTLS
/// (or with another CA) must never resume on this one: tickets and cached sessions are
/// bound to the listener id, the client-auth mode and the CA bundle. The served certificate
/// is deliberately not part of it, so a certificate rotation keeps sessions resumable.
fn resumption_context(listener: &Listener, mode: ClientAuthMode, ca_ders: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fiberlb-tls-resumption-v1\0");
    h.update(listener.id.as_bytes());
    h.update([0, mode as u8]);
    for der in ca_ders {
        h.update((der.len() as u64).to_be_bytes());
        h.update(der);
    }
    h.finalize().into()
}
