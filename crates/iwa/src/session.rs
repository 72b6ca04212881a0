//! Session cookies for ordinary logins (mod_auth_gssapi's `GssapiUseSessions`): after
//! a Kerberos or NTLM login the gateway sets an AEAD session ticket ([`crate::ticket`]),
//! and later requests that carry it skip the handshake. The ticket never outlives the
//! Kerberos ticket behind it, expires when idle, and has an absolute cap.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::{HeaderMap, HeaderValue, COOKIE};

use crate::identity::Identity;
use crate::ticket::{
    Purpose, SessionPayload, Subject, TicketClaims, TicketCodec, TicketError, TicketLifetime,
};

/// How session cookies are issued and read.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub codec: Arc<TicketCodec>,
    /// Cookie name (default `iwa_session`).
    pub cookie_name: String,
    pub lifetime: TicketLifetime,
    /// Add `Secure` (TLS listeners).
    pub secure: bool,
    /// Tickets opened recently, so a browser's next requests with the same cookie skip
    /// the decryption and decoding (shared by clones).
    opened: Arc<OpenedCache>,
}

/// What a request's session cookie says.
#[derive(Debug)]
pub enum SessionLookup {
    /// No session cookie.
    Absent,
    /// A valid session; `renewed` is a `Set-Cookie` to send when the sliding window moved.
    Valid {
        identity: Identity,
        renewed: Option<HeaderValue>,
    },
    /// A cookie that does not open (expired, tampered, rotated-out key, ...).
    Invalid(TicketError),
}

/// The value of cookie `name` among the request's `Cookie` headers (RFC 6265 §5.4).
/// A `Cookie` header that is not all visible ASCII is ignored as a whole.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let in_pair = |pair: &'a str| {
        pair.trim()
            .split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    };
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(visible_ascii)
        .find_map(|text| {
            // A header that is one cookie (often: just the session) needs no splitting.
            if has_semicolon(text) {
                text.split(';').find_map(in_pair)
            } else {
                in_pair(text)
            }
        })
}

/// The header value as text when it is all visible ASCII (and tab): what
/// `HeaderValue::to_str` accepts, checked without a branch per byte (session cookies
/// are long, and read more than once per request).
fn visible_ascii(v: &HeaderValue) -> Option<&str> {
    let bytes = v.as_bytes();
    let visible = bytes.iter().fold(true, |ok, &b| {
        ok & (((32..127).contains(&b)) | (b == b'\t'))
    });
    if visible {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// Whether `text` contains `;`, without a branch per byte.
fn has_semicolon(text: &str) -> bool {
    text.bytes().fold(false, |found, b| found | (b == b';'))
}

impl SessionSettings {
    pub fn new(codec: Arc<TicketCodec>) -> Self {
        SessionSettings {
            codec,
            cookie_name: "iwa_session".into(),
            lifetime: TicketLifetime::DEFAULT,
            secure: false,
            opened: Arc::new(OpenedCache::new(OpenedCache::DEFAULT_CAPACITY)),
        }
    }

    fn set_cookie(&self, value: &str, clear: bool) -> Option<HeaderValue> {
        set_cookie_header(&self.cookie_name, value, self.secure, clear)
    }

    /// Reads the session cookie of a request.
    ///
    /// A cookie value opened before under the same codec is not decrypted again: its
    /// claims come from a bounded cache of the values themselves, and only their times
    /// are checked at `now`, exactly as [`TicketCodec::open`] would check them. Any
    /// other value — a tampered one included — is opened in full.
    pub fn lookup(&self, headers: &HeaderMap, now: SystemTime) -> SessionLookup {
        let Some(value) = cookie_value(headers, &self.cookie_name) else {
            return SessionLookup::Absent;
        };
        let key = self.opened.key(value);
        let opened = match self.opened.get(key, value) {
            Some(o) if Arc::ptr_eq(&o.codec, &self.codec) => {
                if let Err(e) = o.claims.check_times(now, self.codec.clock_skew()) {
                    self.opened.remove(key);
                    return SessionLookup::Invalid(e);
                }
                o
            }
            _ => {
                let claims: TicketClaims<SessionPayload> =
                    match self.codec.open(Purpose::Session, value, now) {
                        Ok(c) => c,
                        Err(e) => return SessionLookup::Invalid(e),
                    };
                let identity = match claims.payload().to_identity(claims.not_after()) {
                    Ok(id) => id,
                    Err(e) => return SessionLookup::Invalid(e),
                };
                let opened = Arc::new(Opened {
                    value: value.into(),
                    codec: self.codec.clone(),
                    claims,
                    identity,
                });
                self.opened.insert(key, opened.clone());
                opened
            }
        };
        let renewed = if opened.claims.needs_renewal(now) {
            self.codec
                .seal(&opened.claims.clone().renew(now))
                .ok()
                .and_then(|v| self.set_cookie(&v, false))
        } else {
            None
        };
        SessionLookup::Valid {
            identity: opened.identity.clone(),
            renewed,
        }
    }

    /// The `Set-Cookie` for a fresh login, or `None` when no ticket can be made (e.g. too
    /// many groups for a cookie: then every request simply authenticates again).
    pub fn issue(&self, identity: &Identity, now: SystemTime) -> Option<HeaderValue> {
        let claims = TicketClaims::issue(
            Purpose::Session,
            Subject::of(identity),
            SessionPayload::from(identity),
            self.lifetime,
            identity.expires,
            now,
        )
        .ok()?;
        match self.codec.seal(&claims) {
            Ok(v) => self.set_cookie(&v, false),
            Err(e) => {
                tracing::warn!("no session cookie for {}: {e}", identity.principal);
                None
            }
        }
    }

    /// A `Set-Cookie` that deletes the session cookie.
    pub fn clear(&self) -> Option<HeaderValue> {
        self.set_cookie("", true)
    }

    /// Removes the session cookie from a request before it is forwarded: the ticket is
    /// a bearer credential the backend has no business seeing.
    pub fn strip(&self, headers: &mut HeaderMap) {
        strip_cookie(headers, &self.cookie_name);
    }
}

/// A session ticket that opened: the cookie value, its claims (whose times are
/// checked again on every use) and the identity they carry, and the codec that opened
/// it.
#[derive(Debug)]
struct Opened {
    value: Box<str>,
    codec: Arc<TicketCodec>,
    claims: TicketClaims<SessionPayload>,
    identity: Identity,
}

/// Bounded cache of opened session tickets.
///
/// Found by a secret-keyed hash (SipHash, random key per process) of the value's first
/// 64 and last 32 characters — a ticket's random nonce and its AEAD tag, 256
/// unpredictable bits, without hashing the whole cookie on every request — and then
/// the whole value is compared: only the very same cookie hits, never a tampered
/// copy. (The comparison is reached only when the keyed hash already matched, which
/// an attacker who does not hold the cookie cannot arrange; it is branch-free anyway.)
///
/// Sharded by key (one short lock per lookup; two cores hardly ever meet on a shard),
/// each shard two generations: lookups find entries in either, a hit in the older one
/// moves to the newer, and when the newer is full the older is dropped whole. So
/// memory stays under `capacity` entries (each about the size of its cookie, at most
/// [`crate::ticket::MAX_TICKET_LEN`], plus the identity), eviction costs nothing per
/// request, and whatever is in use survives.
struct OpenedCache {
    keys: std::collections::hash_map::RandomState,
    shards: [Mutex<Generations>; OpenedCache::SHARDS],
    /// Entries per generation per shard.
    per_generation: usize,
}

impl std::fmt::Debug for OpenedCache {
    // Not the entries: cookies and identities have no business in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedCache")
            .field("capacity", &(self.per_generation * 2 * Self::SHARDS))
            .finish_non_exhaustive()
    }
}

/// The keys are keyed hashes already: used as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Generation = HashMap<u64, Arc<Opened>, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct Generations {
    young: Generation,
    old: Generation,
}

/// Whether `a == b`, without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl OpenedCache {
    /// Distinct session cookies kept: a few thousand browsers in active use.
    const DEFAULT_CAPACITY: usize = 4096;
    const SHARDS: usize = 16;

    fn new(capacity: usize) -> Self {
        OpenedCache {
            keys: std::collections::hash_map::RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::new(Generations::default())),
            per_generation: (capacity / Self::SHARDS / 2).max(1),
        }
    }

    fn key(&self, value: &str) -> u64 {
        let v = value.as_bytes();
        match (
            v.get(..64),
            v.len().checked_sub(32).and_then(|at| v.get(at..)),
        ) {
            (Some(head), Some(tail)) if v.len() > 96 => self.keys.hash_one((head, tail)),
            _ => self.keys.hash_one(v),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Generations> {
        // In bounds: the index is taken modulo the (constant, non-zero) shard count. A
        // poisoned shard holds nothing a panic could have left half-done.
        match self.shards[(key >> 32) as usize % Self::SHARDS].lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        }
    }

    fn get(&self, key: u64, value: &str) -> Option<Arc<Opened>> {
        let found = {
            let mut g = self.shard(key);
            match g.young.get(&key) {
                Some(o) => o.clone(),
                None => {
                    let o = g.old.remove(&key)?;
                    g.admit(key, o.clone(), self.per_generation);
                    o
                }
            }
        };
        same(found.value.as_bytes(), value.as_bytes()).then_some(found)
    }

    fn insert(&self, key: u64, opened: Arc<Opened>) {
        self.shard(key).admit(key, opened, self.per_generation);
    }

    fn remove(&self, key: u64) {
        let mut g = self.shard(key);
        g.young.remove(&key);
        g.old.remove(&key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap();
                g.young.len() + g.old.len()
            })
            .sum()
    }
}

impl Generations {
    fn admit(&mut self, key: u64, opened: Arc<Opened>, per_generation: usize) {
        if self.young.len() >= per_generation && !self.young.contains_key(&key) {
            // The old generation goes; its map's allocation is kept for the next one.
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
        self.young.insert(key, opened);
    }
}

/// A `Set-Cookie` value for one of the gateway's ticket cookies: `HttpOnly`,
/// `SameSite=Lax`, `Path=/`, `Secure` on TLS listeners; `clear` deletes it.
pub fn set_cookie_header(
    name: &str,
    value: &str,
    secure: bool,
    clear: bool,
) -> Option<HeaderValue> {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    if clear {
        c.push_str("; Max-Age=0");
    }
    HeaderValue::from_str(&c).ok()
}

/// Removes cookie `name` from a request's `Cookie` headers, keeping the others (in one
/// `Cookie` header; headers that are not visible ASCII go too).
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    // The common cases: no `Cookie` header, or one that is this cookie alone.
    let mut all = headers.get_all(COOKIE).iter();
    match (all.next().map(visible_ascii), all.next()) {
        (None, _) => return,
        (Some(Some(text)), None) if !has_semicolon(text) => {
            if text.trim().split_once('=').is_some_and(|(k, _)| k == name) {
                headers.remove(COOKIE);
            }
            return;
        }
        _ => {}
    }
    if cookie_value(headers, name).is_none() {
        return;
    }
    let mut kept = String::new();
    let pairs = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(visible_ascii)
        .flat_map(|v| v.split(';'))
        .map(str::trim);
    for pair in pairs {
        if pair.is_empty() || pair.split_once('=').is_some_and(|(k, _)| k == name) {
            continue;
        }
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(pair);
    }
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept) {
            headers.insert(COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;
    use crate::ticket::KeyRing;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn settings() -> SessionSettings {
        SessionSettings::new(Arc::new(TicketCodec::new(KeyRing::from_keys(
            &[9u8; 32],
            &[],
        ))))
    }

    fn cookie_header(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {pair}; lang=en")).unwrap(),
        );
        h
    }

    fn alice(expires: Option<SystemTime>) -> Identity {
        let mut id =
            Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &BTreeMap::new());
        id.expires = expires;
        id
    }

    #[test]
    fn issue_then_lookup_round_trips_and_strip_keeps_other_cookies() {
        let s = settings();
        let now = SystemTime::now();
        let set = s
            .issue(&alice(Some(now + Duration::from_secs(3600))), now)
            .unwrap();
        let v = set.to_str().unwrap();
        assert!(
            v.starts_with("iwa_session=") && v.contains("HttpOnly") && v.contains("SameSite=Lax")
        );
        let mut headers = cookie_header(&set);
        match s.lookup(&headers, now) {
            SessionLookup::Valid { identity, renewed } => {
                assert_eq!(identity.principal, "alice@EX.TEST");
                assert!(renewed.is_none());
            }
            other => panic!("{other:?}"),
        }
        s.strip(&mut headers);
        assert_eq!(headers[COOKIE], "theme=dark; lang=en");
    }

    #[test]
    fn never_outlives_the_kerberos_ticket_and_renews_after_half_the_idle_window() {
        let s = settings();
        let now = SystemTime::now();
        let min = |m: u64| Duration::from_secs(m * 60);
        let set = s.issue(&alice(Some(now + min(60))), now).unwrap();
        let headers = cookie_header(&set);
        match s.lookup(&headers, now + min(14)) {
            SessionLookup::Valid { renewed, .. } => {
                assert!(renewed.is_none(), "before half of 30 min idle")
            }
            other => panic!("{other:?}"),
        }
        let renewed = match s.lookup(&headers, now + min(16)) {
            SessionLookup::Valid { renewed, .. } => renewed.expect("past half of 30 min idle"),
            other => panic!("{other:?}"),
        };
        // Not renewed: idle expiry at 30 min. Renewed at 16: good until 46.
        assert!(matches!(
            s.lookup(&headers, now + min(31)),
            SessionLookup::Invalid(_)
        ));
        let renewed = cookie_header(&renewed);
        assert!(matches!(
            s.lookup(&renewed, now + min(40)),
            SessionLookup::Valid { .. }
        ));
        // Never past the Kerberos ticket's end, however it is renewed.
        assert!(matches!(
            s.lookup(&renewed, now + min(61)),
            SessionLookup::Invalid(_)
        ));
    }

    #[test]
    fn tampered_or_foreign_cookies_are_invalid() {
        let s = settings();
        let now = SystemTime::now();
        let set = s.issue(&alice(None), now).unwrap();
        let other = SessionSettings::new(Arc::new(TicketCodec::new(KeyRing::from_keys(
            &[7u8; 32],
            &[],
        ))));
        assert!(matches!(
            other.lookup(&cookie_header(&set), now),
            SessionLookup::Invalid(_)
        ));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("iwa_session=AAAA"));
        assert!(matches!(s.lookup(&h, now), SessionLookup::Invalid(_)));
        assert!(matches!(
            s.lookup(&HeaderMap::new(), now),
            SessionLookup::Absent
        ));
    }

    fn value_of(set_cookie: &HeaderValue) -> String {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        pair.split_once('=').unwrap().1.to_owned()
    }

    /// The cached entry for a `Set-Cookie`'s value, if any.
    fn cached(s: &SessionSettings, set_cookie: &HeaderValue) -> Option<Arc<Opened>> {
        let value = value_of(set_cookie);
        s.opened.get(s.opened.key(&value), &value)
    }

    #[test]
    fn a_second_lookup_is_served_from_the_cache() {
        let s = settings();
        let now = SystemTime::now();
        let set = s.issue(&alice(None), now).unwrap();
        let headers = cookie_header(&set);
        assert!(cached(&s, &set).is_none(), "nothing before the first use");
        assert!(matches!(
            s.lookup(&headers, now),
            SessionLookup::Valid { .. }
        ));
        let entry = cached(&s, &set).expect("cached after the first use");
        // What a hit returns is the cached identity: plant a marker to see it.
        let mut marked = alice(None);
        marked.user = "from-the-cache".into();
        s.opened.insert(
            s.opened.key(&entry.value),
            Arc::new(Opened {
                value: entry.value.clone(),
                codec: entry.codec.clone(),
                claims: entry.claims.clone(),
                identity: marked,
            }),
        );
        match s.lookup(&headers, now) {
            SessionLookup::Valid { identity, renewed } => {
                assert_eq!(identity.user, "from-the-cache");
                assert!(renewed.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.opened.len(), 1);
    }

    #[test]
    fn every_expiry_is_checked_on_a_hit() {
        let s = settings();
        let now = SystemTime::now();
        let min = |m: u64| Duration::from_secs(m * 60);
        let headers = |set: &HeaderValue| cookie_header(set);
        // Idle window (30 min by default), from the cache: never renewed → expired at 31.
        let set = s.issue(&alice(None), now).unwrap();
        assert!(matches!(
            s.lookup(&headers(&set), now),
            SessionLookup::Valid { .. }
        ));
        match s.lookup(&headers(&set), now + min(31)) {
            SessionLookup::Invalid(TicketError::IdleExpired { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(cached(&s, &set).is_none(), "expired entries go");
        // The Kerberos ticket's end (not_after), from the cache.
        let set = s.issue(&alice(Some(now + min(10))), now).unwrap();
        assert!(matches!(
            s.lookup(&headers(&set), now),
            SessionLookup::Valid { .. }
        ));
        match s.lookup(&headers(&set), now + min(11)) {
            SessionLookup::Invalid(TicketError::CredentialExpired { .. }) => {}
            other => panic!("{other:?}"),
        }
        // The absolute cap, from the cache.
        let mut short = settings();
        short.lifetime = TicketLifetime {
            idle_timeout: min(30),
            absolute: min(5),
        };
        let set = short.issue(&alice(None), now).unwrap();
        assert!(matches!(
            short.lookup(&headers(&set), now),
            SessionLookup::Valid { .. }
        ));
        match short.lookup(&headers(&set), now + min(6)) {
            SessionLookup::Invalid(TicketError::AbsoluteExpired { .. }) => {}
            other => panic!("{other:?}"),
        }
        // Issued in the future beyond the skew, seen from the past: not yet valid.
        let set = s.issue(&alice(None), now).unwrap();
        assert!(matches!(
            s.lookup(&headers(&set), now),
            SessionLookup::Valid { .. }
        ));
        match s.lookup(&headers(&set), now - min(5)) {
            SessionLookup::Invalid(TicketError::NotYetValid { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn renewal_is_still_issued_on_a_hit_and_the_renewed_cookie_is_a_new_entry() {
        let s = settings();
        let now = SystemTime::now();
        let min = |m: u64| Duration::from_secs(m * 60);
        let set = s.issue(&alice(None), now).unwrap();
        let headers = cookie_header(&set);
        assert!(matches!(
            s.lookup(&headers, now),
            SessionLookup::Valid { renewed: None, .. }
        ));
        let renewed = match s.lookup(&headers, now + min(16)) {
            SessionLookup::Valid { renewed, .. } => renewed.expect("past half of 30 min idle"),
            other => panic!("{other:?}"),
        };
        assert_ne!(value_of(&renewed), value_of(&set));
        assert!(cached(&s, &renewed).is_none());
        match s.lookup(&cookie_header(&renewed), now + min(20)) {
            SessionLookup::Valid { renewed, .. } => assert!(renewed.is_none()),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.opened.len(), 2);
        // The old cookie still expires on its own schedule, cached or not.
        assert!(matches!(
            s.lookup(&headers, now + min(31)),
            SessionLookup::Invalid(TicketError::IdleExpired { .. })
        ));
    }

    #[test]
    fn a_tampered_cookie_never_hits() {
        let s = settings();
        let now = SystemTime::now();
        let set = s.issue(&alice(None), now).unwrap();
        assert!(matches!(
            s.lookup(&cookie_header(&set), now),
            SessionLookup::Valid { .. }
        ));
        let value = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        // Flip one character in the middle (the ciphertext).
        let mut bytes = value.into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_bytes(&bytes).unwrap());
        assert!(matches!(
            s.lookup(&h, now),
            SessionLookup::Invalid(TicketError::Forged)
        ));
        assert_eq!(s.opened.len(), 1, "failures are not cached");
    }

    #[test]
    fn another_codec_does_not_use_entries_it_did_not_open() {
        let s = settings();
        let now = SystemTime::now();
        let set = s.issue(&alice(None), now).unwrap();
        assert!(matches!(
            s.lookup(&cookie_header(&set), now),
            SessionLookup::Valid { .. }
        ));
        // A clone shares the cache; with its key ring swapped for another, the cookie
        // must not open, cached or not.
        let mut other = s.clone();
        other.codec = Arc::new(TicketCodec::new(KeyRing::from_keys(&[7u8; 32], &[])));
        assert!(matches!(
            other.lookup(&cookie_header(&set), now),
            SessionLookup::Invalid(TicketError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_value_that_shares_the_hashed_edges_does_not_hit() {
        let s = settings();
        let now = SystemTime::now();
        let set = s.issue(&alice(None), now).unwrap();
        assert!(matches!(
            s.lookup(&cookie_header(&set), now),
            SessionLookup::Valid { .. }
        ));
        // Same first 64 and last 32 characters (the same cache key), altered between.
        let mut bytes = value_of(&set).into_bytes();
        assert!(bytes.len() > 200);
        bytes[100] = if bytes[100] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).unwrap();
        assert_eq!(s.opened.key(&forged), s.opened.key(&value_of(&set)));
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("iwa_session={forged}")).unwrap(),
        );
        assert!(matches!(
            s.lookup(&h, now),
            SessionLookup::Invalid(TicketError::Forged)
        ));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = OpenedCache::new(64);
        let s = settings();
        let now = SystemTime::now();
        let value = value_of(&s.issue(&alice(None), now).unwrap());
        let entry = |v: &str| {
            Arc::new(Opened {
                value: v.into(),
                codec: s.codec.clone(),
                claims: s.codec.open(Purpose::Session, &value, now).unwrap(),
                identity: alice(None),
            })
        };
        for i in 0..2_000u32 {
            let v = format!("v{i}");
            cache.insert(cache.key(&v), entry(&v));
            assert!(cache.len() <= 64, "{} entries after {i}", cache.len());
        }
        // An entry in use survives a flood of new ones.
        cache.insert(cache.key("keep"), entry("keep"));
        for i in 2_000..4_000u32 {
            let v = format!("v{i}");
            cache.insert(cache.key(&v), entry(&v));
            assert!(
                cache.get(cache.key("keep"), "keep").is_some(),
                "evicted after {i}"
            );
        }
        assert!(cache.len() <= 64);
    }

    /// The cookie helpers as they were before the fast paths, to compare with.
    fn reference_cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    }

    fn reference_strip_cookie(headers: &mut HeaderMap, name: &str) {
        if reference_cookie_value(headers, name).is_none() {
            return;
        }
        let kept: Vec<String> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k != name) && !pair.is_empty())
            .map(str::to_owned)
            .collect();
        headers.remove(COOKIE);
        if !kept.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
                headers.insert(COOKIE, v);
            }
        }
    }

    #[test]
    fn cookie_helpers_behave_as_before() {
        let cases: &[&[&[u8]]] = &[
            &[],
            &[b"iwa_session=abc"],
            &[b"  iwa_session = abc "],
            &[b" iwa_session=abc ; "],
            &[b"iwa_session="],
            &[b"iwa_session"],
            &[b"other=1"],
            &[b"a=1; iwa_session=abc; b=2"],
            &[b"a=1;iwa_session=abc;b"],
            &[b"a=1", b"iwa_session=abc"],
            &[b"iwa_session=first", b"iwa_session=second"],
            &[b"a=1; iwa_session=one", b"iwa_session=two; c=3"],
            &[b"j\xc3\xbcrgen=1; iwa_session=abc"],
            &[b"j\xc3\xbcrgen=1", b"iwa_session=abc"],
            &[b"iwa_session=abc", b"j\xc3\xbcrgen=1"],
            &[b"x=\t1\t; iwa_session=\tabc"],
            &[b"iwa_session=abc=def"],
            &[b"IWA_SESSION=abc"],
            &[b";;;"],
            &[b""],
        ];
        for case in cases {
            let mut h = HeaderMap::new();
            for v in *case {
                h.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
            }
            assert_eq!(
                cookie_value(&h, "iwa_session"),
                reference_cookie_value(&h, "iwa_session"),
                "{case:?}"
            );
            let (mut ours, mut theirs) = (h.clone(), h.clone());
            strip_cookie(&mut ours, "iwa_session");
            reference_strip_cookie(&mut theirs, "iwa_session");
            assert_eq!(ours, theirs, "{case:?}");
        }
    }
}
