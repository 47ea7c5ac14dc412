//! Probe sharding by rendezvous (highest random weight) hashing.

/// 64-bit FNV-1a: stable across processes, versions and platforms (unlike `std`'s
/// randomly keyed hasher), which is the whole point: every node must compute the same set.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// SplitMix64 finaliser, so similar inputs give unrelated weights.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `k` members (node ids) that actively probe `backend_id`, highest weight first.
///
/// Every node that sees the same live members picks the same probers; removing a member
/// reassigns only the backends it probed (each to the next-highest weight). Duplicate
/// member ids count once.
pub fn probers(backend_id: &str, live_members: &[String], k: usize) -> Vec<String> {
    let mut weighted: Vec<(u64, &String)> = live_members
        .iter()
        .map(|m| {
            (
                mix(fnv1a(&[backend_id.as_bytes(), &[0xff], m.as_bytes()])),
                m,
            )
        })
        .collect();
    // Highest weight first; ties (astronomically rare) broken by id for determinism.
    weighted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    weighted.dedup_by(|a, b| a.1 == b.1);
    weighted
        .into_iter()
        .take(k)
        .map(|(_, m)| m.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn order_independent_and_bounded() {
        let m = members(5);
        let mut rev = m.clone();
        rev.reverse();
        for b in 0..100 {
            let id = format!("backend-{b}");
            let p = probers(&id, &m, 2);
            assert_eq!(p.len(), 2);
            assert_eq!(p, probers(&id, &rev, 2));
            assert_ne!(p[0], p[1]);
        }
        assert_eq!(probers("b", &members(1), 2).len(), 1);
        assert!(probers("b", &[], 2).is_empty());
        assert_eq!(
            probers("b", &["a".into(), "a".into()], 2),
            vec!["a".to_string()]
        );
    }

    #[test]
    fn removing_a_member_only_reassigns_its_backends() {
        let all = members(5);
        let removed = "node-2".to_string();
        let rest: Vec<String> = all.iter().filter(|m| **m != removed).cloned().collect();
        let mut moved = 0;
        for b in 0..1000 {
            let id = format!("backend-{b}");
            let before = probers(&id, &all, 2);
            let after = probers(&id, &rest, 2);
            if before.contains(&removed) {
                moved += 1;
                let kept: Vec<_> = before.iter().filter(|m| **m != removed).collect();
                assert!(kept.iter().all(|m| after.contains(m)), "{id}");
            } else {
                assert_eq!(before, after, "{id} moved although its probers live");
            }
        }
        // node-2 should probe roughly 2/5 of the backends.
        assert!((300..500).contains(&moved), "moved={moved}");
    }

    #[test]
    fn load_is_spread() {
        let m = members(4);
        let mut counts = std::collections::HashMap::new();
        for b in 0..4000 {
            for p in probers(&format!("be{b}"), &m, 1) {
                *counts.entry(p).or_insert(0) += 1;
            }
        }
        assert!(
            counts.values().all(|c| (800..1200).contains(c)),
            "{counts:?}"
        );
    }
}
