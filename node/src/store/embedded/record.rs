//! The on-disk record format of the embedded store and the mapping of redb errors onto
//! [`StoreError`].
//!
//! A value is stored as `create_revision (u64 LE) ++ mod_revision (u64 LE) ++ bytes`: an
//! explicit format of our own rather than a serde encoding, so that the file stays readable
//! whatever crate versions write it. Decoding never trusts the file: a short or inconsistent
//! record is reported as [`StoreError::Corrupted`], not a panic.

use std::path::Path;

use fiberlb_api::store::{KeyValue, StoreError};

/// Length of the fixed header before the value bytes.
const HEADER_LEN: usize = 16;

/// Encodes a value with its revisions.
pub(super) fn encode(create_revision: u64, mod_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The revisions of a stored record, without copying its value.
pub(super) fn revisions(path: &Path, key: &str, raw: &[u8]) -> Result<(u64, u64), StoreError> {
    let (header, _) = raw.split_at_checked(HEADER_LEN).ok_or_else(|| {
        StoreError::Corrupted(format!(
            "{}: record of key {key:?} is {} bytes, shorter than its {HEADER_LEN}-byte header",
            path.display(),
            raw.len()
        ))
    })?;
    let (create, modified) = header.split_at(8);
    let create = u64::from_le_bytes(create.try_into().unwrap_or_default());
    let modified = u64::from_le_bytes(modified.try_into().unwrap_or_default());
    if create == 0 || create > modified {
        return Err(StoreError::Corrupted(format!(
            "{}: record of key {key:?} has create_revision {create} and mod_revision {modified}",
            path.display()
        )));
    }
    Ok((create, modified))
}

/// Decodes a stored record into a [`KeyValue`].
pub(super) fn decode(path: &Path, key: &str, raw: &[u8]) -> Result<KeyValue, StoreError> {
    let (create_revision, mod_revision) = revisions(path, key, raw)?;
    Ok(KeyValue {
        key: key.to_string(),
        value: raw[HEADER_LEN..].to_vec(),
        create_revision,
        mod_revision,
    })
}

/// Converts redb results into store results that name the database file.
pub(super) trait AtFile<T> {
    /// Maps the error with [`map_err`].
    fn at_file(self, path: &Path) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> AtFile<T> for Result<T, E> {
    fn at_file(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| map_err(path, e))
    }
}

/// Maps a redb error (of any of its per-operation types) to a [`StoreError`] naming the file.
pub(super) fn map_err(path: &Path, err: impl Into<redb::Error>) -> StoreError {
    let path = path.display();
    match err.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Unavailable(format!("database already open by another process: {path}"))
        }
        redb::Error::Corrupted(msg) => StoreError::Corrupted(format!("{path}: {msg}")),
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupted(format!("{path}: not a redb database or damaged: {e}"))
        }
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupted(format!("{path}: file is truncated: {e}"))
        }
        e @ (redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }) => {
            StoreError::Corrupted(format!("{path}: not a fiberlb store: {e}"))
        }
        e => StoreError::Unavailable(format!("{path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Path::new("x.redb");
        let raw = encode(3, 7, b"hello");
        let kv = decode(p, "k", &raw).unwrap();
        assert_eq!(
            kv,
            KeyValue {
                key: "k".into(),
                value: b"hello".to_vec(),
                create_revision: 3,
                mod_revision: 7
            }
        );
        assert_eq!(revisions(p, "k", &encode(1, 1, b"")).unwrap(), (1, 1));
    }

    #[test]
    fn damaged_records_are_corrupted_not_panics() {
        let p = Path::new("x.redb");
        for raw in [
            &b""[..],
            &[1u8; 15][..],
            &encode(0, 1, b"v")[..],
            &encode(5, 4, b"v")[..],
        ] {
            assert!(
                matches!(decode(p, "k", raw), Err(StoreError::Corrupted(_))),
                "{raw:?}"
            );
        }
    }
}
