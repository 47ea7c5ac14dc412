//! A hash that is the same in every process, on every platform and in every release.
//!
//! Maglev and IP hash must map a client to the same backend on every fleet node, so their
//! hashes may depend on nothing but the input bytes: no `RandomState`, no `std::hash::Hash`
//! (whose byte stream for a type is not a stability promise), no pointer width. FNV-1a 64
//! is tiny and fully specified; its weak avalanche on short inputs is fixed by MurmurHash3's
//! 64-bit finaliser, which makes every output bit depend on every input bit.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Plain FNV-1a 64 of `bytes`, continuing from `state` (start with [`fnv1a64_start`]).
pub fn fnv1a64(state: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(state, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// The FNV-1a 64 offset basis: the state before any byte.
pub const fn fnv1a64_start() -> u64 {
    FNV_OFFSET_BASIS
}

/// MurmurHash3's `fmix64`: a bijective avalanche of all 64 bits.
const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Stable 64-bit hash of `bytes` under `seed`. Different seeds give independent-looking
/// hashes of the same input (Maglev needs two per endpoint id: offset and skip).
pub fn stable_hash(seed: u64, bytes: &[u8]) -> u64 {
    let h = fnv1a64(fnv1a64_start(), &seed.to_le_bytes());
    fmix64(fnv1a64(h, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(fnv1a64_start(), b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(fnv1a64_start(), b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(fnv1a64_start(), b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn seeds_give_different_hashes() {
        assert_ne!(stable_hash(1, b"backend-1"), stable_hash(2, b"backend-1"));
        assert_ne!(stable_hash(1, b"backend-1"), stable_hash(1, b"backend-2"));
    }
}
