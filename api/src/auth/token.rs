//! Credential secrets and the bootstrap admin token.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiResult;
use crate::keys;
use crate::model::{new_id, now_ms, AccessToken, CredentialKind, TokenScope};
use crate::repo::{encode, Repo};
use crate::store::{Compare, Op, Txn};

/// A new random secret: `fblb_` and 32 random bytes in URL-safe base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "fblb_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a secret, hex: the only form in which secrets are stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What [`bootstrap_admin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// This call created the admin credential; its secret must be handed to the operator.
    Created {
        /// The secret (not stored anywhere in clear by this function).
        secret: String,
    },
    /// A bootstrap credential already existed (created earlier, or by another node).
    AlreadyDone,
}

/// Creates the system-scope admin credential once per store. With `given`, that secret is
/// used (an operator-provided bootstrap token file) instead of a random one. Creating it is
/// a create-if-absent transaction, so nodes of a fleet starting together create exactly one.
pub async fn bootstrap_admin(repo: &Repo, given: Option<String>) -> ApiResult<BootstrapOutcome> {
    if repo.store().get(keys::BOOTSTRAP).await?.is_some() {
        return Ok(BootstrapOutcome::AlreadyDone);
    }
    let secret = given.unwrap_or_else(new_secret);
    let token = AccessToken {
        id: new_id(),
        name: "bootstrap-admin".into(),
        principal: "admin".into(),
        scope: TokenScope::System,
        actions: vec!["fiberlb:*".into()],
        kind: CredentialKind::BearerToken,
        created_at: now_ms(),
        expires_at: None,
        created_by: "bootstrap".into(),
        revoked: false,
        secret_sha256: hash_secret(&secret),
        revision: 0,
    };
    let txn = Txn::new()
        .when(Compare::absent(keys::BOOTSTRAP))
        .then(Op::put(keys::token(&token.id), encode(&token)))
        .then(Op::put(
            keys::token_by_hash(&token.secret_sha256),
            token.id.clone(),
        ))
        .then(Op::put(keys::BOOTSTRAP, token.id.clone()));
    Ok(match repo.commit(txn).await? {
        Some(_) => BootstrapOutcome::Created { secret },
        None => BootstrapOutcome::AlreadyDone,
    })
}
