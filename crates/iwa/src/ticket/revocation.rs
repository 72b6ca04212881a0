//! Server-side revocation of tickets by id.
//!
//! A ticket is stateless, so "stop impersonating" must also remember the stopped
//! ticket's id until the ticket would have expired anyway; after that the entry is
//! useless and is forgotten, which bounds memory by the revocations made within one
//! absolute lifetime. Several gateway instances need a shared store (a later issue);
//! [`RevocationStore`] is that seam.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::TicketId;

/// How long past its `until` an entry is kept, so a clock stepped back a little does
/// not resurrect a revoked ticket that is still within its lifetime at the earlier time.
const PRUNE_GRACE: Duration = Duration::from_secs(300);

/// Remembers revoked ticket ids until they no longer matter.
pub trait RevocationStore: Send + Sync + fmt::Debug {
    /// Revokes `ticket_id` until `until` (pass the ticket's
    /// [`hard_expiry`](super::TicketClaims::hard_expiry)). Revoking again keeps the later
    /// of the two times.
    fn revoke(&self, ticket_id: TicketId, until: SystemTime);

    /// Whether `ticket_id` is revoked at `now`.
    fn is_revoked(&self, ticket_id: &TicketId, now: SystemTime) -> bool;
}

#[derive(Default)]
struct Entries {
    until: HashMap<TicketId, SystemTime>,
    /// The same entries ordered by expiry, for pruning.
    by_expiry: BTreeSet<(SystemTime, TicketId)>,
    /// The latest `now` a caller passed, so `revoke` can prune without a clock.
    latest_now: Option<SystemTime>,
}

impl Entries {
    /// Forgets entries whose `until` is more than [`PRUNE_GRACE`] before `now`.
    fn prune(&mut self, now: SystemTime) {
        let Some(now) = now.checked_sub(PRUNE_GRACE) else {
            return;
        };
        while let Some(&(when, id)) = self.by_expiry.first() {
            if when >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.until.remove(&id);
        }
    }
}

/// The in-memory revocation store: entries are dropped once their `until` has passed
/// (plus a few minutes' grace).
/// It reads no clock: pruning uses the latest `now` given to
/// [`is_revoked`](RevocationStore::is_revoked), on every call of either method.
#[derive(Default)]
pub struct MemoryRevocationStore {
    entries: Mutex<Entries>,
}

impl MemoryRevocationStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many revocations are held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.lock().until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A poisoned lock means another thread panicked mid-update; the maps are still
        // valid maps, so keep using them rather than failing open or closed forever.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("len", &self.len())
            .finish()
    }
}

impl RevocationStore for MemoryRevocationStore {
    fn revoke(&self, ticket_id: TicketId, until: SystemTime) {
        let mut e = self.lock();
        if let Some(&old) = e.until.get(&ticket_id) {
            if old >= until {
                return;
            }
            e.by_expiry.remove(&(old, ticket_id));
        }
        e.until.insert(ticket_id, until);
        e.by_expiry.insert((until, ticket_id));
        if let Some(now) = e.latest_now {
            e.prune(now);
        }
    }

    fn is_revoked(&self, ticket_id: &TicketId, now: SystemTime) -> bool {
        let mut e = self.lock();
        let latest = e.latest_now.map_or(now, |l| l.max(now));
        e.latest_now = Some(latest);
        e.prune(latest);
        e.until.get(ticket_id).is_some_and(|&until| now <= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn id(n: u8) -> TicketId {
        TicketId([n; 16])
    }

    #[test]
    fn revoked_until_the_given_time_then_forgotten() {
        let s = MemoryRevocationStore::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let until = t0 + Duration::from_secs(3600);
        assert!(!s.is_revoked(&id(1), t0));
        s.revoke(id(1), until);
        assert!(s.is_revoked(&id(1), t0));
        assert!(
            s.is_revoked(&id(1), until),
            "the deadline itself is still covered"
        );
        assert!(!s.is_revoked(&id(2), t0));
        assert_eq!(s.len(), 1);
        assert!(!s.is_revoked(&id(1), until + Duration::from_secs(1)));
        assert_eq!(s.len(), 1, "kept for the grace period");
        assert!(!s.is_revoked(&id(1), until + PRUNE_GRACE + Duration::from_secs(1)));
        assert!(s.is_empty(), "expired entries are pruned");
    }

    #[test]
    fn revoking_again_keeps_the_later_time() {
        let s = MemoryRevocationStore::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        s.revoke(id(1), t0 + Duration::from_secs(100));
        s.revoke(id(1), t0 + Duration::from_secs(10));
        assert!(s.is_revoked(&id(1), t0 + Duration::from_secs(50)));
        s.revoke(id(1), t0 + Duration::from_secs(200));
        assert!(s.is_revoked(&id(1), t0 + Duration::from_secs(150)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn memory_is_bounded_by_live_revocations() {
        let s = MemoryRevocationStore::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for n in 0..=255u8 {
            s.revoke(id(n), t0 + Duration::from_secs(u64::from(n)));
        }
        assert_eq!(s.len(), 256);
        let now = t0 + PRUNE_GRACE + Duration::from_secs(100);
        assert!(!s.is_revoked(&id(0), now));
        assert_eq!(s.len(), 156, "entries with until < now - grace are gone");
        assert!(s.is_revoked(&id(200), t0 + Duration::from_secs(100)));
        s.revoke(id(0), t0 + Duration::from_secs(50));
        assert_eq!(s.len(), 156, "revoke prunes too, with the latest now seen");
    }
}
