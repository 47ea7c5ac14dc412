//! The cluster key(s) that seal every datagram.

use std::path::Path;

use base64::Engine as _;
use ring::aead::{LessSafeKey, UnboundKey, CHACHA20_POLY1305};

/// Errors loading or parsing a cluster key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("reading cluster key file {path}: {source}")]
    Read {
        /// The file that failed.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is neither 64 hex digits nor base64 of 32 bytes.
    #[error("cluster key must be 32 bytes as hex (64 digits) or base64, got {len} characters")]
    Format {
        /// Length of the trimmed text, never the text itself (it is a secret).
        len: usize,
    },
}

/// Parses a 32-byte key written as hex or base64 (standard alphabet, padding optional).
pub fn parse_key(text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or(KeyError::Format { len: text.len() })
}

/// Reads and parses a key file (see [`parse_key`]).
pub fn read_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_key(&text)
}

/// One AEAD key with the one-byte id that tells a receiver which key sealed a datagram.
pub(crate) struct ClusterKey {
    pub(crate) id: u8,
    pub(crate) aead: LessSafeKey,
}

impl ClusterKey {
    fn new(bytes: &[u8; 32]) -> Self {
        // The id is a hint (1 byte of a hash of the key), not a secret: a collision only
        // costs a second decryption attempt.
        let id = ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()[0];
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 keys are exactly 32 bytes"));
        Self {
            id,
            aead: LessSafeKey::new(unbound),
        }
    }
}

/// The keys a node uses: the primary seals outgoing datagrams; during a rotation the
/// secondary is also tried on incoming ones, so nodes can switch one at a time.
pub struct Keyring {
    pub(crate) primary: ClusterKey,
    pub(crate) secondary: Option<ClusterKey>,
}

impl Keyring {
    /// A keyring from raw keys.
    pub fn new(primary: [u8; 32], secondary: Option<[u8; 32]>) -> Self {
        Self {
            primary: ClusterKey::new(&primary),
            secondary: secondary.as_ref().map(ClusterKey::new),
        }
    }

    /// A keyring from key files (`[cluster] key_file`, plus the previous key while rotating).
    pub fn from_files(primary: &Path, secondary: Option<&Path>) -> Result<Self, KeyError> {
        let primary = read_key_file(primary)?;
        let secondary = secondary.map(read_key_file).transpose()?;
        Ok(Self::new(primary, secondary))
    }

    /// Keys to try for a datagram that names `id`, primary first.
    pub(crate) fn candidates(&self, id: u8) -> impl Iterator<Item = &ClusterKey> {
        std::iter::once(&self.primary)
            .chain(self.secondary.as_ref())
            .filter(move |k| k.id == id)
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("primary_id", &self.primary.id)
            .field("secondary_id", &self.secondary.as_ref().map(|k| k.id))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_base64() {
        let key = [0xabu8; 32];
        assert_eq!(parse_key(&hex::encode(key)).unwrap(), key);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert_eq!(parse_key(&format!("  {b64}\n")).unwrap(), key);
        assert_eq!(parse_key(b64.trim_end_matches('=')).unwrap(), key);
        assert!(parse_key("abcd").is_err());
        assert!(parse_key(&hex::encode([1u8; 31])).is_err());
    }

    #[test]
    fn reads_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, hex::encode([3u8; 32])).unwrap();
        assert_eq!(read_key_file(&path).unwrap(), [3u8; 32]);
        assert!(matches!(
            read_key_file(&dir.path().join("missing")),
            Err(KeyError::Read { .. })
        ));
    }
}
