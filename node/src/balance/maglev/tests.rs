use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::balance::hash::{fnv1a64, fnv1a64_start};
use crate::balance::tests::{endpoint, endpoints};

/// Checksum of the mapping of [`golden_keys`] computed by [`mapping_checksum`], committed
/// here so any other process, platform or release that maps differently fails this test.
const GOLDEN_CHECKSUM: u64 = 0xd9dd_64a7_6e90_f822;

/// Set in the child process: print the checksum instead of only asserting it.
const PRINT_ENV: &str = "FIBERLB_TEST_PRINT_MAGLEV_CHECKSUM";
const CHECKSUM_PREFIX: &str = "maglev-checksum=";

/// 10,000 fixed client addresses: mostly IPv4, every tenth IPv6.
fn golden_keys() -> Vec<SocketAddr> {
    (0..10_000u32)
        .map(|i| {
            let port = u16::try_from(1024 + (i * 7) % 64_000).unwrap();
            let ip = if i % 10 == 9 {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    (i >> 16) as u16,
                    i as u16,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(
                    0x0a00_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)),
                ))
            };
            SocketAddr::new(ip, port)
        })
        .collect()
}

/// Maps the golden keys with Maglev and IP hash over 10 weighted endpoints, with all of
/// them eligible and with two ineligible, and folds every chosen index into one FNV-1a.
fn mapping_checksum() -> u64 {
    let weights = [1, 1, 1, 1, 1, 2, 2, 3, 5, 1];
    let eps = endpoints(&weights);
    let all = [true; 10];
    let some: Vec<bool> = (0..10).map(|i| i != 2 && i != 7).collect();
    let tables = [
        Maglev::new(&eps),
        Maglev::with_table_size(&eps, KeyMode::Ip, DEFAULT_TABLE_SIZE),
    ];
    let mut h = fnv1a64_start();
    for table in &tables {
        for mask in [&all[..], &some[..]] {
            for &client in &golden_keys() {
                let i = table.pick(&PickContext { client }, mask).unwrap();
                h = fnv1a64(h, &u32::try_from(i).unwrap().to_le_bytes());
            }
        }
    }
    h
}

#[test]
fn golden_checksum() {
    let sum = mapping_checksum();
    if std::env::var_os(PRINT_ENV).is_some() {
        // On a line of its own: libtest has already written "test … ... " without a newline.
        println!("\n{CHECKSUM_PREFIX}{sum:016x}");
    }
    assert_eq!(sum, GOLDEN_CHECKSUM, "mapping changed: got {sum:#018x}");
}

/// Runs [`golden_checksum`] in a fresh process of this test binary and compares what it
/// printed with this process's mapping.
#[test]
fn child_process_maps_identically() {
    let exe = std::env::current_exe().unwrap();
    let name = format!(
        "{}::golden_checksum",
        module_path!().split_once("::").unwrap().1
    );
    let mut child = Command::new(exe)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(PRINT_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let out = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => out,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child test process did not finish: {e}");
        }
    };
    let status = child.wait().unwrap();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(CHECKSUM_PREFIX))
        .unwrap_or_else(|| panic!("child printed no checksum ({status}): {out}"));
    assert_eq!(
        u64::from_str_radix(line.trim(), 16).unwrap(),
        mapping_checksum()
    );
    assert!(status.success(), "child failed: {out}");
}

#[test]
fn table_is_balanced() {
    for n in [1usize, 2, 3, 5, 10, 50, 100, 655] {
        let eps = endpoints(&vec![1; n]);
        let m = Maglev::new(&eps);
        assert_eq!(m.table_size(), DEFAULT_TABLE_SIZE);
        let fair = m.table_size() as f64 / n as f64;
        for (i, &c) in m.slot_counts().iter().enumerate() {
            let off = (c as f64 - fair).abs() / fair;
            assert!(
                off <= 0.05,
                "n={n}: endpoint {i} has {c} slots, fair {fair:.1}"
            );
        }
    }
}

#[test]
fn weights_set_the_share() {
    let weights = [1u32, 2, 3, 10];
    let m = Maglev::new(&endpoints(&weights));
    let total: u32 = weights.iter().sum();
    for (i, &c) in m.slot_counts().iter().enumerate() {
        let fair = m.table_size() as f64 * f64::from(weights[i]) / f64::from(total);
        assert!(
            (c as f64 - fair).abs() / fair <= 0.05,
            "endpoint {i}: {c} vs {fair:.0}"
        );
    }
}

#[test]
fn extreme_weights_leave_no_endpoint_without_slots() {
    let mut weights = vec![100u32; 654];
    weights.push(1);
    let m = Maglev::new(&endpoints(&weights));
    assert!(m.slot_counts().iter().all(|&c| c > 0));
}

#[test]
fn large_pools_get_a_larger_prime_table() {
    assert_eq!(default_table_size(655), DEFAULT_TABLE_SIZE);
    let size = default_table_size(700);
    assert!(size >= 70_000 && is_prime(size));
    assert_eq!(
        Maglev::with_table_size(&endpoints(&[1]), KeyMode::Ip, 100).table_size(),
        101
    );
}

/// `count` pseudo-random client keys from a fixed seed.
fn keys(count: usize) -> Vec<u64> {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(0x6d61_676c);
    (0..count).map(|_| rng.random()).collect()
}

#[test]
fn removing_one_backend_moves_few_keys() {
    let keys = keys(100_000);
    for n in [5usize, 10, 50] {
        let eps = endpoints(&vec![1; n]);
        let full = Maglev::new(&eps);
        let all = vec![true; n];
        let before: Vec<usize> = keys
            .iter()
            .map(|&k| full.lookup(k, &all).unwrap())
            .collect();
        let limit = keys.len() as f64 * (1.0 / n as f64 + 0.02);
        for removed in [0, n / 2, n - 1] {
            // Through the eligible mask: exactly the removed backend's keys move.
            let mut mask = all.clone();
            mask[removed] = false;
            let mut moved = 0;
            for (&k, &b) in keys.iter().zip(&before) {
                let now = full.lookup(k, &mask).unwrap();
                assert_ne!(now, removed);
                if now != b {
                    assert_eq!(b, removed, "a key of a healthy backend moved");
                    moved += 1;
                }
            }
            assert!(
                moved as f64 <= limit,
                "mask n={n}: {moved} moved, limit {limit:.0}"
            );

            // Through a rebuilt table without it.
            let rest: Vec<Endpoint> = eps
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != removed)
                .map(|(_, e)| e.clone())
                .collect();
            let rebuilt = Maglev::new(&rest);
            let all_rest = vec![true; n - 1];
            let moved = keys
                .iter()
                .zip(&before)
                .filter(|&(&k, &b)| rest[rebuilt.lookup(k, &all_rest).unwrap()].id != eps[b].id)
                .count();
            assert!(
                moved as f64 <= limit,
                "rebuild n={n}: {moved} moved, limit {limit:.0}"
            );
        }
    }
}

#[test]
fn removed_backends_keys_spread_over_the_rest() {
    let n = 10;
    let eps = endpoints(&vec![1; n]);
    let m = Maglev::new(&eps);
    let mut mask = vec![true; n];
    mask[4] = false;
    let mut got = vec![0usize; n];
    for k in keys(100_000) {
        if m.lookup(k, &vec![true; n]) == Some(4) {
            got[m.lookup(k, &mask).unwrap()] += 1;
        }
    }
    let moved: usize = got.iter().sum();
    let fair = moved as f64 / (n - 1) as f64;
    for (i, &c) in got.iter().enumerate().filter(|&(i, _)| i != 4) {
        assert!(
            (c as f64) > fair * 0.5 && (c as f64) < fair * 1.5,
            "endpoint {i}: {got:?}"
        );
    }
}

#[test]
fn keys_spread_evenly() {
    let n = 7;
    let m = Maglev::new(&endpoints(&vec![1; n]));
    let mut counts = vec![0usize; n];
    for k in keys(70_000) {
        counts[m.lookup(k, &vec![true; n]).unwrap()] += 1;
    }
    for c in counts {
        assert!((9_000..11_000).contains(&c), "{c}");
    }
}

#[test]
fn order_of_construction_and_port_matter_as_documented() {
    let eps = endpoints(&[1; 6]);
    let a = Maglev::new(&eps);
    let b = Maglev::new(&eps);
    let mut port_changes = 0;
    for (i, client) in golden_keys().into_iter().enumerate().take(2_000) {
        let ctx = PickContext { client };
        assert_eq!(a.pick(&ctx, &[true; 6]), b.pick(&ctx, &[true; 6]));
        let other = PickContext {
            client: SocketAddr::new(client.ip(), client.port() ^ 1),
        };
        if a.pick(&ctx, &[true; 6]) != a.pick(&other, &[true; 6]) {
            port_changes += 1;
        }
        assert_eq!(
            client_key(client, KeyMode::Ip),
            client_key(other.client, KeyMode::Ip),
            "{i}"
        );
    }
    // Keyed by IP and port, a different source port usually lands elsewhere.
    assert!(port_changes > 1_000, "{port_changes}");
}

#[test]
fn duplicate_ids_and_tiny_tables_still_work() {
    let eps = vec![endpoint("same", 1, false), endpoint("same", 1, false)];
    let m = Maglev::new(&eps);
    assert!(m.slot_counts().iter().all(|&c| c > 0));
    let tiny = Maglev::with_table_size(&endpoints(&[1; 5]), KeyMode::IpPort, 0);
    assert_eq!(tiny.table_size(), 2);
    let owners: Vec<usize> = (0..2)
        .map(|k| tiny.lookup(k, &[true; 5]).unwrap())
        .collect();
    let orphan = (0..5).find(|i| !owners.contains(i)).unwrap();
    let mut only = [false; 5];
    only[orphan] = true;
    for k in 0..100 {
        assert!(tiny.lookup(k, &[true; 5]).is_some());
        assert_eq!(tiny.lookup(k, &only), Some(orphan));
        assert_eq!(tiny.lookup(k, &[false; 5]), None);
    }
}
