//! What an HTTP/1 backend answers (response heads, interim 1xx heads, chunked bodies with
//! trailers), through the parser and decoder our backend client uses: never panics, and
//! the outcome does not depend on how the bytes were split between reads.

#![no_main]

use fiberlb_node::proxy::http::decode_backend_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let whole = decode_backend_bytes(rest, rest.len());
    let split = if rest.is_empty() {
        0
    } else {
        first as usize * rest.len() / 255
    };
    assert_eq!(whole, decode_backend_bytes(rest, split), "split at {split}");
});
