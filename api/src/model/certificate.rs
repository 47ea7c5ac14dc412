use serde::{Deserialize, Serialize};

use super::Scope;

/// A certificate chain with its private key (write-only through the API), or a CA bundle.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// UUID.
    pub id: String,
    /// Unique within its scope.
    pub name: String,
    /// Owner.
    pub scope: Scope,
    /// PEM chain, leaf first.
    pub certificate_pem: String,
    /// PEM private key; never returned by any RPC.
    pub private_key_pem: Option<String>,
    /// DNS names of the leaf (SANs, else CN).
    pub subject_names: Vec<String>,
    /// Validity start (Unix ms).
    pub not_before: u64,
    /// Validity end (Unix ms).
    pub not_after: u64,
    /// SHA-256 of the leaf DER, hex.
    pub fingerprint_sha256: String,
    /// Creation time (Unix ms).
    pub created_at: u64,
    /// Last modification (Unix ms).
    pub updated_at: u64,
    /// Store revision (not persisted in the value).
    #[serde(skip)]
    pub revision: u64,
}

impl std::fmt::Debug for Certificate {
    /// Never prints the key, so a stray `{:?}` in a log cannot leak it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("subject_names", &self.subject_names)
            .field("has_private_key", &self.private_key_pem.is_some())
            .finish_non_exhaustive()
    }
}
