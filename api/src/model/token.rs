use serde::{Deserialize, Serialize};

/// How a credential is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// `authorization: Bearer <secret>`.
    BearerToken,
    /// `x-api-key: <secret>`.
    ApiKey,
}

/// What a credential may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Platform operators: every tenant.
    System,
    /// One organization, all its projects.
    Org {
        /// Organization.
        org_id: String,
    },
    /// One project of one organization (plus read access to org-level objects).
    Project {
        /// Organization.
        org_id: String,
        /// Project.
        project_id: String,
    },
}

/// A credential bound to a principal, a scope and action patterns. The secret itself is
/// never stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessToken {
    /// UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Principal id it authenticates.
    pub principal: String,
    /// Reach.
    pub scope: TokenScope,
    /// Action patterns such as `fiberlb:pools:*`.
    pub actions: Vec<String>,
    /// Presentation.
    pub kind: CredentialKind,
    /// Creation time (Unix ms).
    pub created_at: u64,
    /// Expiry (Unix ms).
    pub expires_at: Option<u64>,
    /// Principal that created it.
    pub created_by: String,
    /// Revoked credentials authenticate nothing.
    pub revoked: bool,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Store revision (not persisted in the value).
    #[serde(skip)]
    pub revision: u64,
}
