//! `decode` on arbitrary bytes: never panics, never claims more bytes than it was given,
//! and agrees with itself when the input grows or shrinks.

#![no_main]

use fiberlb_node::proxy::proxy_protocol::{decode, encode, Decoded, Version, V2_MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = decode(data);
    let mut longer = data.to_vec();
    longer.extend_from_slice(b"\r\n\0X");
    match first {
        Ok(Decoded::Incomplete { needed_at_least }) => {
            assert!(needed_at_least > data.len(), "needs no more than it has");
            assert!(needed_at_least <= V2_MAX_LEN, "needs more than any header");
        }
        Ok(Decoded::Header {
            src,
            dst,
            len,
            ref tlvs,
        }) => {
            assert!(
                len > 0 && len <= data.len(),
                "consumed {len} of {}",
                data.len()
            );
            assert!(len <= V2_MAX_LEN);
            assert_eq!(src.is_some(), dst.is_some());
            if src.is_none() {
                assert!(tlvs.is_empty() || data[0] == b'\r');
            }
            // Bytes after the header change nothing, and the header alone suffices.
            assert_eq!(decode(&longer).ok(), first.as_ref().ok().cloned());
            assert_eq!(decode(&data[..len]).ok(), first.as_ref().ok().cloned());
            // A strict prefix of the header is never a header.
            assert!(matches!(
                decode(&data[..len - 1]),
                Ok(Decoded::Incomplete { .. }) | Err(_)
            ));
            // What we decoded, we can encode, and it decodes to the same endpoints.
            if let (Some(src), Some(dst)) = (src, dst) {
                for version in [Version::V1, Version::V2] {
                    match decode(&encode(version, src, dst)) {
                        Ok(Decoded::Header { src: s, dst: d, .. }) => {
                            assert_eq!((s, d), (Some(src), Some(dst)));
                        }
                        other => panic!("re-encoded header decodes as {other:?}"),
                    }
                }
            }
        }
        // Once refused, more bytes can never make it acceptable.
        Err(_) => assert!(decode(&longer).is_err(), "an error turned into success"),
    }
});
