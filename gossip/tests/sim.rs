//! Deterministic simulation: several `GossipCore`s exchange datagrams in memory on a
//! virtual clock, with random latency and loss from a seeded RNG. Every failure prints
//! the seed; rerun with `GOSSIP_SEED=<seed>`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use fiberlb_gossip::{
    CoreConfig, CoreTimer, Entry, GossipCore, Identity, Keyring, MemberState, Output, Timing,
};
use rand010::{rngs::StdRng, RngExt as _, SeedableRng as _};

enum Event {
    Timer(CoreTimer),
    Datagram(Vec<u8>),
}

struct Sim {
    now: u64,
    seq: u64,
    /// (time ms, seq) -> (node index, event); seq keeps ordering deterministic.
    queue: BTreeMap<(u64, u64), (usize, Event)>,
    cores: Vec<GossipCore>,
    addrs: Vec<SocketAddr>,
    silenced: HashSet<usize>,
    rng: StdRng,
    loss: f64,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 7946))
}

impl Sim {
    fn new(seed: u64, n: usize, loss: f64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let addrs: Vec<_> = (0..n).map(addr).collect();
        let cores = (0..n)
            .map(|i| {
                GossipCore::new(
                    CoreConfig {
                        identity: Identity {
                            node_id: format!("node-{i}"),
                            gossip_addr: addrs[i],
                            api_addr: SocketAddr::from(([10, 0, 0, i as u8 + 1], 9090)),
                            generation: 1,
                        },
                        // Everyone knows only node-0, as with one seed in `[cluster] peers`.
                        seeds: vec![addrs[0]],
                        timing: Timing::lan(),
                        rng_seed: rng.random(),
                        initial_version: 1,
                    },
                    Keyring::new([7; 32], None),
                )
            })
            .collect();
        let mut sim = Self {
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            cores,
            addrs,
            silenced: HashSet::new(),
            rng,
            loss,
        };
        for i in 0..n {
            sim.collect(i);
        }
        sim
    }

    fn push(&mut self, at: u64, node: usize, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), (node, event));
    }

    fn collect(&mut self, i: usize) {
        for out in self.cores[i].take_outputs() {
            match out {
                Output::Schedule { after, timer } => {
                    let at = self.now + after.as_millis() as u64;
                    self.push(at, i, Event::Timer(timer));
                }
                Output::Send { to, datagram } => {
                    let Some(dst) = self.addrs.iter().position(|a| *a == to) else {
                        continue;
                    };
                    if self.silenced.contains(&i) || self.rng.random_bool(self.loss) {
                        continue;
                    }
                    let latency = self.rng.random_range(1..20);
                    self.push(self.now + latency, dst, Event::Datagram(datagram));
                }
            }
        }
    }

    /// Runs the event loop until virtual time `until` (ms).
    fn run_until(&mut self, until: u64) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let ((at, _), (node, event)) = entry.remove_entry();
            self.now = at;
            if self.silenced.contains(&node) {
                continue;
            }
            match event {
                Event::Timer(t) => self.cores[node].handle_timer(t),
                Event::Datagram(d) => {
                    let _ = self.cores[node].handle_datagram(&d);
                }
            }
            self.collect(node);
        }
        self.now = until;
    }

    /// Runs until `pred` holds (checked every 50 ms) or `limit` ms pass; returns the time.
    fn run_until_pred(&mut self, limit: u64, mut pred: impl FnMut(&Sim) -> bool) -> Option<u64> {
        let start = self.now;
        while self.now - start <= limit {
            if pred(self) {
                return Some(self.now - start);
            }
            let next = self.now + 50;
            self.run_until(next);
        }
        None
    }

    fn state_of(&self, observer: usize, node: usize) -> Option<MemberState> {
        self.cores[observer]
            .members()
            .into_iter()
            .find(|m| m.id == format!("node-{node}"))
            .map(|m| m.state)
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("GOSSIP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (0..8).map(|_| rand010::random()).collect(),
    }
}

fn all_alive(sim: &Sim, nodes: &[usize]) -> bool {
    nodes.iter().all(|&o| {
        nodes
            .iter()
            .all(|&n| sim.state_of(o, n) == Some(MemberState::Alive))
    })
}

#[test]
fn membership_converges_and_silenced_member_is_declared_down() {
    for seed in seeds() {
        let n = 3 + (seed % 3) as usize; // 3 to 5 nodes
        let mut sim = Sim::new(seed, n, 0.02);
        let everyone: Vec<usize> = (0..n).collect();
        let joined = sim.run_until_pred(10_000, |s| all_alive(s, &everyone));
        assert!(joined.is_some(), "seed={seed}: {n} nodes did not converge");

        // Silence the last node: it neither sends nor receives.
        let victim = n - 1;
        sim.silenced.insert(victim);
        let rest: Vec<usize> = (0..victim).collect();
        let down_after = sim.run_until_pred(5_000, |s| {
            rest.iter()
                .all(|&o| s.state_of(o, victim) == Some(MemberState::Down))
        });
        let Some(ms) = down_after else {
            panic!("seed={seed}: silenced node not declared down within 5 s");
        };
        println!("seed={seed} n={n}: joined in {joined:?} ms, victim down after {ms} ms");
        assert!(all_alive(&sim, &rest), "seed={seed}: survivors disagree");
        for &o in &rest {
            assert!(
                !sim.cores[o]
                    .live_member_ids()
                    .contains(&format!("node-{victim}")),
                "seed={seed}"
            );
        }
    }
}

#[test]
fn entries_replicate_and_expire_with_their_origin() {
    for seed in seeds() {
        let n = 4;
        let mut sim = Sim::new(seed, n, 0.02);
        let everyone: Vec<usize> = (0..n).collect();
        assert!(
            sim.run_until_pred(10_000, |s| all_alive(s, &everyone))
                .is_some(),
            "seed={seed}: no convergence"
        );
        for (i, healthy) in [(1usize, true), (1, false), (3, true)] {
            sim.cores[i]
                .publish(Entry::Health {
                    backend_id: "be-1".into(),
                    healthy,
                    observed_at_ms: 5,
                })
                .unwrap();
            sim.collect(i);
        }
        let expected = |s: &Sim, o: usize| {
            let snap = s.cores[o].snapshot();
            snap.len() == 2
                && snap.contains(&(
                    "node-1".into(),
                    Entry::Health {
                        backend_id: "be-1".into(),
                        healthy: false,
                        observed_at_ms: 5,
                    },
                ))
        };
        assert!(
            sim.run_until_pred(5_000, |s| everyone.iter().all(|&o| expected(s, o)))
                .is_some(),
            "seed={seed}: entries did not converge"
        );

        // node-3 dies: its entry disappears everywhere else.
        sim.silenced.insert(3);
        assert!(
            sim.run_until_pred(5_000, |s| (0..3).all(|o| {
                let snap = s.cores[o].snapshot();
                snap.len() == 1 && snap[0].0 == "node-1"
            }))
            .is_some(),
            "seed={seed}: dead origin's entries did not expire"
        );
    }
}

#[test]
fn late_joiner_receives_existing_entries() {
    for seed in seeds() {
        let mut sim = Sim::new(seed, 3, 0.0);
        // node-2 is silent from the start and joins later.
        sim.silenced.insert(2);
        assert!(sim
            .run_until_pred(5_000, |s| all_alive(s, &[0, 1]))
            .is_some());
        sim.cores[1]
            .publish(Entry::Connections {
                backend_id: "be-9".into(),
                count: 4,
            })
            .unwrap();
        sim.collect(1);
        sim.run_until(sim.now + 3_000);
        sim.silenced.remove(&2);
        // Its timers were swallowed while silenced: restart them.
        for t in [CoreTimer::Announce, CoreTimer::Rebroadcast] {
            sim.cores[2].handle_timer(t);
        }
        sim.collect(2);
        let got = sim.run_until_pred(10_000, |s| {
            s.cores[2].snapshot()
                == vec![(
                    "node-1".to_string(),
                    Entry::Connections {
                        backend_id: "be-9".into(),
                        count: 4,
                    },
                )]
        });
        assert!(got.is_some(), "seed={seed}: late joiner never converged");
    }
}

#[test]
fn garbage_datagrams_do_not_disturb_membership() {
    for seed in seeds() {
        let mut sim = Sim::new(seed, 3, 0.0);
        assert!(sim
            .run_until_pred(5_000, |s| all_alive(s, &[0, 1, 2]))
            .is_some());
        let wrong_key = Keyring::new([8; 32], None);
        for i in 0..500usize {
            let len = sim.rng.random_range(0..1500);
            let mut bytes: Vec<u8> = (0..len).map(|_| sim.rng.random()).collect();
            if i % 3 == 0 {
                bytes = fiberlb_gossip::seal(&wrong_key, [i as u8; 12], &bytes);
                bytes.truncate(fiberlb_gossip::MAX_DATAGRAM);
            }
            assert!(sim.cores[0].handle_datagram(&bytes).is_err(), "seed={seed}");
        }
        sim.run_until(sim.now + 2_000);
        assert!(all_alive(&sim, &[0, 1, 2]), "seed={seed}");
    }
}
