//! The datagram envelope: `version | key id | nonce | AEAD(payload)`.
//!
//! Every datagram is sealed with ChaCha20-Poly1305 under the cluster key; the two header
//! bytes are authenticated as associated data. Anything that does not open is dropped
//! before foca sees a byte of it.

use ring::aead::{Aad, Nonce, NONCE_LEN};

use crate::keys::Keyring;

/// Envelope format version.
pub const WIRE_VERSION: u8 = 1;
/// Header bytes before the nonce: version, key id.
const HEADER_LEN: usize = 2;
/// Poly1305 tag length.
const TAG_LEN: usize = 16;
/// Bytes the envelope adds to a payload.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Largest foca payload we produce; foca's `max_packet_size` is set to this.
pub const MAX_PAYLOAD: usize = 1400;
/// Largest datagram accepted; anything longer is dropped unread.
pub const MAX_DATAGRAM: usize = MAX_PAYLOAD + OVERHEAD;

/// Why a datagram was dropped; the label of `fiberlb_gossip_dropped_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// Longer than [`MAX_DATAGRAM`].
    #[error("datagram too large")]
    TooLarge,
    /// Shorter than the envelope.
    #[error("datagram too short")]
    TooShort,
    /// Unknown envelope version.
    #[error("unknown wire version")]
    Version,
    /// No configured key has the datagram's key id.
    #[error("unknown key id")]
    UnknownKey,
    /// Authentication failed (forged, tampered, or sealed with another key).
    #[error("authentication failed")]
    Auth,
    /// Opened fine but the SWIM payload or a state entry did not decode or was refused.
    #[error("payload rejected")]
    Payload,
}

impl DropReason {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::TooShort => "too_short",
            Self::Version => "version",
            Self::UnknownKey => "unknown_key",
            Self::Auth => "auth",
            Self::Payload => "payload",
        }
    }

    /// Counts the drop in the process metrics.
    pub(crate) fn count(self) {
        metrics::counter!("fiberlb_gossip_dropped_total", "reason" => self.as_str()).increment(1);
    }
}

/// Seals `payload` with the primary key. `nonce` must never repeat under one key; the
/// core draws it from a CSPRNG (96 random bits).
pub fn seal(keys: &Keyring, nonce: [u8; NONCE_LEN], payload: &[u8]) -> Vec<u8> {
    let header = [WIRE_VERSION, keys.primary.id];
    let mut out = Vec::with_capacity(payload.len() + OVERHEAD);
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce);
    let mut body = payload.to_vec();
    // Sealing only fails when the input exceeds ChaCha20's 256 GiB limit.
    if keys
        .primary
        .aead
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(header),
            &mut body,
        )
        .is_err()
    {
        unreachable!("payloads are bounded by MAX_PAYLOAD");
    }
    out.extend_from_slice(&body);
    out
}

/// Opens a datagram, returning the foca payload. Never panics on any input; this is
/// the function the fuzz target drives.
pub fn decode_datagram(keys: &Keyring, bytes: &[u8]) -> Result<Vec<u8>, DropReason> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(DropReason::TooLarge);
    }
    if bytes.len() < OVERHEAD {
        return Err(DropReason::TooShort);
    }
    let (header, rest) = bytes.split_at(HEADER_LEN);
    if header[0] != WIRE_VERSION {
        return Err(DropReason::Version);
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| DropReason::TooShort)?;
    let aad = [header[0], header[1]];
    let mut tried = false;
    for key in keys.candidates(header[1]) {
        tried = true;
        let mut body = sealed.to_vec();
        if let Ok(plain) = key.aead.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        ) {
            let len = plain.len();
            body.truncate(len);
            return Ok(body);
        }
    }
    Err(if tried {
        DropReason::Auth
    } else {
        DropReason::UnknownKey
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand010::{rngs::StdRng, Rng as _, RngExt as _, SeedableRng as _};

    fn ring(k: u8) -> Keyring {
        Keyring::new([k; 32], None)
    }

    #[test]
    fn round_trip() {
        let keys = ring(1);
        let sealed = seal(&keys, [9; NONCE_LEN], b"hello swim");
        assert_eq!(sealed.len(), b"hello swim".len() + OVERHEAD);
        assert_eq!(decode_datagram(&keys, &sealed).unwrap(), b"hello swim");
        assert_eq!(
            decode_datagram(&keys, &seal(&keys, [0; 12], b"")).unwrap(),
            b""
        );
    }

    #[test]
    fn every_tampered_byte_is_dropped() {
        let keys = ring(1);
        let sealed = seal(&keys, [9; NONCE_LEN], b"payload bytes");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = decode_datagram(&keys, &bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    DropReason::Auth | DropReason::Version | DropReason::UnknownKey
                ),
                "byte {i}: {err:?}"
            );
        }
    }

    #[test]
    fn wrong_key_is_dropped_and_rotation_key_accepted() {
        let old = ring(1);
        let new = ring(2);
        let sealed_old = seal(&old, [3; NONCE_LEN], b"x");
        assert!(decode_datagram(&new, &sealed_old).is_err());
        // A node mid-rotation (new primary, old secondary) opens both.
        let rotating = Keyring::new([2; 32], Some([1; 32]));
        assert_eq!(decode_datagram(&rotating, &sealed_old).unwrap(), b"x");
        let sealed_new = seal(&rotating, [4; NONCE_LEN], b"y");
        assert_eq!(decode_datagram(&new, &sealed_new).unwrap(), b"y");
        assert!(decode_datagram(&old, &sealed_new).is_err());
        // Same key id but a different key: authentication fails, not a panic.
        let mut forged = sealed_new.clone();
        forged[1] = old.primary.id;
        assert!(decode_datagram(&old, &forged).is_err());
    }

    #[test]
    fn size_bounds() {
        let keys = ring(1);
        assert_eq!(
            decode_datagram(&keys, &vec![WIRE_VERSION; MAX_DATAGRAM + 1]),
            Err(DropReason::TooLarge)
        );
        assert_eq!(
            decode_datagram(&keys, &[1, 2, 3]),
            Err(DropReason::TooShort)
        );
        assert_eq!(decode_datagram(&keys, &[]), Err(DropReason::TooShort));
    }

    /// Property loop: random, truncated and bit-flipped datagrams never panic and never
    /// open. Prints the seed so a failure can be replayed.
    #[test]
    fn garbage_never_panics() {
        let seed: u64 = std::env::var("GOSSIP_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand010::random);
        println!("garbage_never_panics seed={seed}");
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = ring(5);
        let valid = seal(&keys, [7; NONCE_LEN], &[42u8; 200]);
        for _ in 0..5_000 {
            let len = rng.random_range(0..MAX_DATAGRAM + 64);
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            if rng.random_bool(0.5) && !bytes.is_empty() {
                bytes[0] = WIRE_VERSION;
                if bytes.len() > 1 {
                    bytes[1] = keys.primary.id;
                }
            }
            assert!(decode_datagram(&keys, &bytes).is_err(), "seed={seed}");
            let cut = rng.random_range(0..valid.len());
            assert!(
                decode_datagram(&keys, &valid[..cut]).is_err(),
                "seed={seed}"
            );
        }
    }
}
