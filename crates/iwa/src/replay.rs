//! Replay detection for Kerberos authenticators, in memory.
//!
//! MIT's default replay cache is a file that every acceptance reads and writes under a
//! lock; that I/O is a large share of a fresh-token acceptance. We keep the same rule
//! in memory instead: an AP-REQ whose encrypted authenticator (the ciphertext bytes, as
//! MIT's `file2` cache keys it) was accepted before, within the window, is a replay.
//! The window is twice the allowed clock skew, because a client clock may be ahead by
//! the skew as well as behind. A tag is recorded only after GSSAPI accepted the token,
//! so garbage cannot fill the cache; of two concurrent copies of one token, the second
//! to be recorded is refused.
//!
//! Several gateway instances behind one name need a shared store (a later issue); the
//! [`ReplayCache`] trait is that seam.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A 128-bit digest identifying one authenticator.
pub type Tag = [u8; 16];

/// Remembers authenticators for a window of time.
pub trait ReplayCache: Send + Sync + fmt::Debug {
    /// Records `tag` at `now`. Returns `false` if it was already recorded and has not
    /// expired: a replay.
    fn insert_new(&self, tag: Tag, now: Instant) -> bool;
}

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    expiry: HashMap<Tag, Instant>,
    /// Insertion order; every entry has the same lifetime, so it is also expiry order.
    order: VecDeque<(Instant, Tag)>,
}

impl Shard {
    fn prune(&mut self, now: Instant) {
        while let Some(&(when, tag)) = self.order.front() {
            if when > now {
                break;
            }
            self.order.pop_front();
            // Remove only if this queue entry is the live one for the tag.
            if self.expiry.get(&tag) == Some(&when) {
                self.expiry.remove(&tag);
            }
        }
    }
}

/// The in-memory replay cache: sharded, entries evicted in expiry order.
pub struct MemoryReplayCache {
    window: Duration,
    shards: Vec<Mutex<Shard>>,
}

impl fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl MemoryReplayCache {
    /// `clock_skew` is the acceptor's allowed skew (MIT's default: 300 s).
    pub fn new(clock_skew: Duration) -> Self {
        MemoryReplayCache {
            window: clock_skew.saturating_mul(2),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// How many tags are held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.expiry.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplayCache for MemoryReplayCache {
    fn insert_new(&self, tag: Tag, now: Instant) -> bool {
        let index = usize::from(tag[0]) % SHARDS;
        let Some(shard) = self.shards.get(index) else {
            return false; // unreachable: index < SHARDS == shards.len()
        };
        // A poisoned lock means another thread panicked mid-update; the map is still a
        // valid map, so keep using it rather than failing open or closed forever.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        shard.prune(now);
        if let Some(&until) = shard.expiry.get(&tag) {
            if until > now {
                return false;
            }
        }
        let until = now + self.window;
        shard.expiry.insert(tag, until);
        shard.order.push_back((until, tag));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(n: u8) -> Tag {
        let mut t = [0u8; 16];
        t[0] = n;
        t[15] = n.wrapping_mul(7);
        t
    }

    #[test]
    fn second_sighting_within_window_is_a_replay() {
        let c = MemoryReplayCache::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(c.insert_new(tag(1), t0));
        assert!(!c.insert_new(tag(1), t0));
        assert!(!c.insert_new(tag(1), t0 + Duration::from_secs(599)));
        assert!(c.insert_new(tag(2), t0));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn entries_expire_after_twice_the_skew() {
        let c = MemoryReplayCache::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(c.insert_new(tag(1), t0));
        let later = t0 + Duration::from_secs(601);
        assert!(c.insert_new(tag(3), later), "pruning happens on insert");
        assert!(c.insert_new(tag(1), later), "expired tag is accepted again");
        assert!(!c.insert_new(tag(1), later));
    }

    #[test]
    fn eviction_keeps_memory_bounded_by_the_window() {
        let c = MemoryReplayCache::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..=255u8 {
            assert!(c.insert_new(tag(i), t0));
        }
        let later = t0 + Duration::from_secs(3);
        for i in 0..SHARDS as u8 {
            assert!(c.insert_new(tag(i), later));
        }
        assert_eq!(c.len(), SHARDS);
    }
}
