//! `parse` on arbitrary bytes: never panics, never asks for more than `MAX_BYTES` or
//! for less than it has, returns only validated host names, and is stable as input grows.

#![no_main]

use fiberlb_node::proxy::client_hello::{parse, Parsed, MAX_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = parse(data);
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x01, 0x01]);
    match first {
        Ok(Parsed::Incomplete { needed_at_least }) => {
            assert!(needed_at_least > data.len(), "needs no more than it has");
            assert!(needed_at_least <= MAX_BYTES, "asks for more than the limit");
        }
        Ok(Parsed::Hello(ref info)) => {
            if let Some(sni) = &info.sni {
                assert!(!sni.is_empty() && sni.len() <= 253);
                assert!(!sni.ends_with('.'));
                assert!(sni.parse::<std::net::IpAddr>().is_err());
                assert!(sni
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)));
            }
            assert!(info.alpn.iter().all(|p| !p.is_empty() && p.len() <= 255));
            assert_eq!(info.legacy_version >> 8, 3);
            // Bytes after the hello (the client's next records) change nothing.
            assert_eq!(parse(&longer).ok(), first.as_ref().ok().cloned());
        }
        // Once refused, more bytes can never make it acceptable.
        Err(_) => assert!(parse(&longer).is_err(), "an error turned into success"),
    }
});
