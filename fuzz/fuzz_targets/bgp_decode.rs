//! BGP messages from a peer: decoding never panics, never consumes more than it was given,
//! and a decoded message re-encodes to bytes that decode to the same message.

#![no_main]

use fiberlb_bgp::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = decode(data) {
        assert!(used <= data.len() && used >= 19);
        if let Ok(bytes) = msg.encode() {
            let again = decode(&bytes).expect("re-encoded message decodes").expect("complete");
            assert_eq!(again.0, msg);
        }
    }
});
