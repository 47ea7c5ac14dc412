//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
//! Network Load Balancer", NSDI 2016, §3.4).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::hash::stable_hash;
use super::{
    eligible_count, is_eligible, nth_eligible, weight_of, Balancer, Endpoint, PickContext,
};

/// Lookup table size used by [`Maglev::new`] for pools of up to 655 endpoints: a prime, and
/// at least 100 entries per endpoint so each endpoint's share is within about 1% of fair.
pub const DEFAULT_TABLE_SIZE: usize = 65_537;

/// Seeds of the three stable hashes. Changing any of them remaps every client on every node:
/// they are part of the wire contract between fleet members of different versions.
const SEED_OFFSET: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SEED_SKIP: u64 = 0x6d61_676c_6576_736b; // "maglevsk"
const SEED_KEY: u64 = 0x6d61_676c_6576_6b79; // "maglevky"

/// What of the client address is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// IP and port: spreads one client's connections, still stable per connection tuple.
    IpPort,
    /// IP only: every connection of a client goes to the same backend (IP hash).
    Ip,
}

/// The stable 64-bit key of a client address. IPv4-mapped IPv6 addresses hash as the IPv4
/// address they are, so a dual-stack listener maps a client the same on either socket.
pub fn client_key(client: SocketAddr, mode: KeyMode) -> u64 {
    let mut buf = [0u8; 18];
    let mut len = match client.ip().to_canonical() {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            buf[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    if mode == KeyMode::IpPort {
        buf[len..len + 2].copy_from_slice(&client.port().to_be_bytes());
        len += 2;
    }
    stable_hash(SEED_KEY, &buf[..len])
}

/// The table, narrowed to `u16` entries whenever the endpoint count allows (it always does
/// in practice), halving the memory of the 65,537-entry default to 128 KiB per pool.
enum Table {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

impl Table {
    fn len(&self) -> usize {
        match self {
            Table::Narrow(t) => t.len(),
            Table::Wide(t) => t.len(),
        }
    }

    fn get(&self, slot: usize) -> usize {
        match self {
            Table::Narrow(t) => usize::from(t[slot]),
            Table::Wide(t) => t[slot] as usize,
        }
    }
}

/// A Maglev lookup table over the endpoints: `table[key mod M]` is the endpoint for `key`.
///
/// Each endpoint walks its own permutation of the `M` slots, `offset + j * skip (mod M)`,
/// with `offset` and `skip` from two stable hashes of its id (`M` prime, so every `skip`
/// visits every slot), and the endpoints take turns claiming their next free slot. So the
/// table depends only on the ids, weights and `M` — never on the process or the order of
/// construction beyond the endpoint order — and every fleet node builds the same one.
/// Weighted endpoints claim slots in proportion to their weight: per round, endpoint `i`
/// claims `floor((r+1) w_i / w_max) - floor(r w_i / w_max)` slots, which with equal
/// weights is exactly one per round, i.e. the paper's algorithm.
///
/// Health changes do not rebuild the table (they only change the `eligible` mask): a
/// lookup that lands on an ineligible endpoint walks forward to the next slot whose
/// endpoint is eligible. That is deterministic, so every node with the same eligible set
/// maps a client identically; only the ineligible endpoint's keys move, and because
/// neighbouring slots belong to effectively random endpoints they spread evenly over the
/// rest. A config change that removes a backend rebuilds the table, which the permutation
/// scheme keeps close to minimal disruption too.
pub struct Maglev {
    table: Table,
    endpoints: usize,
    mode: KeyMode,
}

impl fmt::Debug for Maglev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Maglev")
            .field("table_size", &self.table.len())
            .field("endpoints", &self.endpoints)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Maglev {
    /// Maglev keyed by client IP and port, with the default table size (grown to a prime
    /// ≥ 100 × endpoints for pools of more than 655).
    pub fn new(endpoints: &[Endpoint]) -> Self {
        Self::with_table_size(
            endpoints,
            KeyMode::IpPort,
            default_table_size(endpoints.len()),
        )
    }

    /// Maglev with an explicit key mode and table size. The size is rounded up to the next
    /// prime (at least 2), which the permutations need; fewer than ~100 slots per endpoint
    /// makes the shares uneven, and fewer slots than endpoints leaves some with none (they
    /// are then reached only when no endpoint that owns a slot is eligible).
    pub fn with_table_size(endpoints: &[Endpoint], mode: KeyMode, size: usize) -> Self {
        let size = next_prime(size.max(2));
        let table = populate(endpoints, size);
        let table = if endpoints.len() <= usize::from(u16::MAX) + 1 {
            // Every index fits: it is below endpoints.len() ≤ 65,536.
            Table::Narrow(
                table
                    .iter()
                    .map(|&i| u16::try_from(i).unwrap_or(u16::MAX))
                    .collect(),
            )
        } else {
            Table::Wide(table.into_boxed_slice())
        };
        Self {
            table,
            endpoints: endpoints.len(),
            mode,
        }
    }

    /// Number of slots (a prime).
    pub fn table_size(&self) -> usize {
        self.table.len()
    }

    /// How many slots each endpoint owns (for tests and diagnostics).
    pub fn slot_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.endpoints];
        for slot in 0..self.table.len() {
            counts[self.table.get(slot)] += 1;
        }
        counts
    }

    /// The endpoint for an arbitrary stable key (e.g. a hashed session cookie): the slot's
    /// owner if eligible, else the owner of the next slot forward that is.
    pub fn lookup(&self, key: u64, eligible: &[bool]) -> Option<usize> {
        let m = self.table.len();
        if m == 0 || self.endpoints == 0 {
            return None;
        }
        // m ≤ usize::MAX, so the remainder fits a usize.
        let start = (key % m as u64) as usize;
        let owner = self.table.get(start);
        if is_eligible(eligible, owner) {
            return Some(owner);
        }
        if eligible_count(eligible, self.endpoints) == 0 {
            return None;
        }
        (1..m)
            .map(|step| self.table.get((start + step) % m))
            .find(|&e| is_eligible(eligible, e))
            .or_else(|| {
                // Only when every eligible endpoint owns no slot, which needs a table with
                // fewer slots than endpoints: still answer, deterministically.
                let n = eligible_count(eligible, self.endpoints);
                nth_eligible(eligible, self.endpoints, (key % n as u64) as usize)
            })
    }
}

impl Balancer for Maglev {
    fn pick(&self, ctx: &PickContext, eligible: &[bool]) -> Option<usize> {
        self.lookup(client_key(ctx.client, self.mode), eligible)
    }
}

/// [`DEFAULT_TABLE_SIZE`], or the first prime ≥ 100 × `endpoints` when that is larger.
pub fn default_table_size(endpoints: usize) -> usize {
    let wanted = endpoints.saturating_mul(100);
    if wanted <= DEFAULT_TABLE_SIZE {
        DEFAULT_TABLE_SIZE
    } else {
        next_prime(wanted)
    }
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    (3..)
        .step_by(2)
        .take_while(|d| d * d <= n)
        .all(|d| !n.is_multiple_of(d))
}

fn next_prime(mut n: usize) -> usize {
    while !is_prime(n) {
        n += 1;
    }
    n
}

/// Fills `m` slots (m prime ≥ 2) with endpoint indices; empty when there are no endpoints.
fn populate(endpoints: &[Endpoint], m: usize) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    if endpoints.is_empty() {
        return Vec::new();
    }
    let m64 = m as u64;
    // (next slot to try, skip) per endpoint; both < m, so the sums below never overflow.
    let mut walk: Vec<(usize, usize)> = endpoints
        .iter()
        .map(|e| {
            let offset = stable_hash(SEED_OFFSET, e.id.as_bytes()) % m64;
            let skip = stable_hash(SEED_SKIP, e.id.as_bytes()) % (m64 - 1) + 1;
            (offset as usize, skip as usize)
        })
        .collect();
    let weights: Vec<u64> = endpoints.iter().map(weight_of).collect();
    let w_max = weights.iter().copied().max().unwrap_or(1);
    let mut table = vec![EMPTY; m];
    let mut filled = 0usize;
    let mut round = 0u64;
    loop {
        for (i, (&w, (next, skip))) in weights.iter().zip(walk.iter_mut()).enumerate() {
            // Everyone claims a slot in the first round, so no endpoint of a pool with
            // extreme weight ratios ends up with no slot at all (and so no traffic).
            let quota = ((round + 1) * w / w_max - round * w / w_max).max(u64::from(round == 0));
            for _ in 0..quota {
                // A free slot exists (filled < m) and the permutation visits every slot.
                while table[*next] != EMPTY {
                    *next = (*next + *skip) % m;
                }
                // i < endpoints.len(), and a pool never has 2^32 endpoints.
                table[*next] = u32::try_from(i).unwrap_or(EMPTY - 1);
                *next = (*next + *skip) % m;
                filled += 1;
                if filled == m {
                    return table;
                }
            }
        }
        round += 1;
    }
}

#[cfg(test)]
mod tests;
