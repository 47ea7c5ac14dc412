//! Gossip datagrams from the network: decryption and decoding never panic, and nothing
//! forged without the key is ever accepted.

#![no_main]

use fiberlb_gossip::{decode_datagram, Keyring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keyring::new([7u8; 32], Some([9u8; 32]));
    // Random bytes cannot carry a valid AEAD tag for our keys (2^-128).
    assert!(decode_datagram(&keys, data).is_err(), "accepted a forged datagram");
});
