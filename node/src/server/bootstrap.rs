//! The first admin credential: created once per store, its secret written to
//! `<data-dir>/bootstrap-token` (mode 0600) and never logged. An operator-provided
//! `[admin] bootstrap_token_file` replaces the generated secret.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use fiberlb_api::auth::{bootstrap_admin, BootstrapOutcome};
use fiberlb_api::repo::Repo;
use fiberlb_api::store::ConfigStore;

use crate::settings::Settings;

/// File name of the generated bootstrap token inside the data dir.
pub const TOKEN_FILE: &str = "bootstrap-token";

/// Creates the admin credential if the store has none yet.
pub async fn ensure_admin(store: &Arc<dyn ConfigStore>, settings: &Settings) -> anyhow::Result<()> {
    let given = match &settings.admin.bootstrap_token_file {
        Some(p) => {
            let s = std::fs::read_to_string(p)
                .with_context(|| format!("admin.bootstrap_token_file {}", p.display()))?;
            let s = s.trim().to_string();
            anyhow::ensure!(
                s.len() >= 16,
                "admin.bootstrap_token_file {}: token shorter than 16 characters",
                p.display()
            );
            Some(s)
        }
        None => None,
    };
    let operator_given = given.is_some();
    match bootstrap_admin(&Repo::new(store.clone()), given)
        .await
        .context("creating the bootstrap admin token")?
    {
        BootstrapOutcome::Created { secret } if !operator_given => {
            let path = settings.storage.data_dir.join(TOKEN_FILE);
            write_secret(&path, &secret)?;
            tracing::info!(path = %path.display(), "bootstrap admin token written");
        }
        BootstrapOutcome::Created { .. } => {
            tracing::info!("bootstrap admin token taken from admin.bootstrap_token_file")
        }
        BootstrapOutcome::AlreadyDone => {}
    }
    Ok(())
}

/// Writes a secret readable by the owner only, atomically (temp file + rename).
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
