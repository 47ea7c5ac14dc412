//! The bytes as a TOML config file: parsing and validation never panic, and a parsed
//! configuration survives `to_toml` (the `fiberlb` effective-config printout) unchanged,
//! secrets aside. `validate` may stat files named in the input; it never writes.

#![no_main]

use fiberlb_node::settings::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(settings) = toml::from_str::<Settings>(text) else {
        return;
    };
    let valid = settings.validate().is_ok();
    let printed = settings.to_toml();
    let reparsed = match toml::from_str::<Settings>(&printed) {
        Ok(reparsed) => reparsed,
        Err(e) => panic!("to_toml output does not parse: {e}\n{printed}"),
    };
    let mut expected = settings.clone();
    for peer in &mut expected.bgp.peers {
        if peer.password.is_some() {
            peer.password = Some("********".to_owned());
        }
    }
    assert_eq!(
        reparsed, expected,
        "to_toml changed the settings:\n{printed}"
    );
    if valid && expected == settings {
        assert!(
            reparsed.validate().is_ok(),
            "printed settings no longer validate"
        );
    }
});
