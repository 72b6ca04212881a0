//! The identity header contract with the backend (shared/DESIGN.md, "Wire contract").

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::identity::Identity;

/// Header names that carry identity to the backend. Anything a client sends under one
/// of these names — in any letter case, with `_` for `-` — or under the `X-Iwa-`
/// prefix is removed before the request goes further.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: HeaderName,
    pub principal: HeaderName,
    pub sid: HeaderName,
    pub groups: HeaderName,
    pub group_sids: HeaderName,
    pub auth_method: HeaderName,
    pub impersonator: HeaderName,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            user: HeaderName::from_static("x-remote-user"),
            principal: HeaderName::from_static("x-remote-user-principal"),
            sid: HeaderName::from_static("x-remote-user-sid"),
            groups: HeaderName::from_static("x-remote-groups"),
            group_sids: HeaderName::from_static("x-remote-group-sids"),
            auth_method: HeaderName::from_static("x-remote-auth-method"),
            impersonator: HeaderName::from_static("x-remote-impersonator"),
        }
    }
}

/// Reserved prefix for the gateway's own headers (e.g. `X-Iwa-Assertion`).
const RESERVED_PREFIX: &[u8] = b"x-iwa-";

/// `a` equals `b` when `_` in `a` is read as `-`. `HeaderName`s are lowercase already.
fn eq_folding_underscore(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
}

impl IdentityHeaders {
    fn names(&self) -> [&HeaderName; 7] {
        [
            &self.user,
            &self.principal,
            &self.sid,
            &self.groups,
            &self.group_sids,
            &self.auth_method,
            &self.impersonator,
        ]
    }

    /// Whether a client-sent header name is reserved for the gateway.
    pub fn is_reserved(&self, name: &HeaderName) -> bool {
        let n = name.as_str().as_bytes();
        if n.len() >= RESERVED_PREFIX.len()
            && eq_folding_underscore(&n[..RESERVED_PREFIX.len()], RESERVED_PREFIX)
        {
            return true;
        }
        self.names()
            .iter()
            .any(|r| eq_folding_underscore(n, r.as_str().as_bytes()))
    }

    /// Removes every reserved header. Returns how many names were removed.
    pub fn strip(&self, headers: &mut HeaderMap) -> usize {
        // Fast path: nearly every request carries none of them.
        if !headers.keys().any(|k| self.is_reserved(k)) {
            return 0;
        }
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| self.is_reserved(k))
            .cloned()
            .collect();
        for name in &doomed {
            headers.remove(name);
        }
        doomed.len()
    }

    /// Adds the identity headers for `identity`. Values that cannot be header values
    /// (control characters in a name) are percent-encoded rather than dropped.
    /// Sets the impersonator header: the real user while impersonating (then the
    /// other headers describe the impersonated user).
    pub fn apply_impersonator(&self, real_user: &str, headers: &mut HeaderMap) {
        headers.insert(self.impersonator.clone(), value(real_user));
    }

    pub fn apply(&self, identity: &Identity, headers: &mut HeaderMap) {
        headers.insert(self.user.clone(), value(&identity.remote_user()));
        headers.insert(self.principal.clone(), value(&identity.principal));
        headers.insert(
            self.auth_method.clone(),
            HeaderValue::from_static(identity.method.as_str()),
        );
        if let Some(sid) = &identity.sid {
            headers.insert(self.sid.clone(), value(sid));
        }
        let names: Vec<String> = identity
            .groups
            .iter()
            .filter_map(|g| g.name.as_deref())
            .map(encode_list_item)
            .collect();
        if !names.is_empty() {
            headers.insert(self.groups.clone(), value(&names.join(",")));
        }
        let sids: Vec<&str> = identity
            .groups
            .iter()
            .filter_map(|g| g.sid.as_deref())
            .collect();
        if !sids.is_empty() {
            headers.insert(self.group_sids.clone(), value(&sids.join(",")));
        }
    }
}

/// Percent-encodes `%` and `,` (list separators) inside one list item.
pub fn encode_list_item(item: &str) -> String {
    let mut out = String::with_capacity(item.len());
    for c in item.chars() {
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            c => out.push(c),
        }
    }
    out
}

/// A header value for `text`. Visible ASCII, space and tab pass as they are; every other
/// byte (controls, non-ASCII UTF-8) is percent-encoded as `%XX`, so nothing is lost or
/// injected. (`%` itself is left alone here; list items encode it, see
/// [`encode_list_item`].)
fn value(text: &str) -> HeaderValue {
    let plain = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b);
    if text.bytes().all(plain) {
        if let Ok(v) = HeaderValue::from_str(text) {
            return v;
        }
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // Only visible ASCII and tab remain, which is always a valid header value.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AuthMethod, Group};
    use std::collections::BTreeMap;

    #[test]
    fn strips_every_spelling() {
        let h = IdentityHeaders::default();
        let mut map = HeaderMap::new();
        for name in [
            "X-Remote-User",
            "x_remote_user",
            "X_REMOTE_USER",
            "x-remote-user-principal",
            "X-Remote-User-Sid",
            "x-remote-groups",
            "X_Remote_Group_Sids",
            "x-remote-auth-method",
            "X-Remote-Impersonator",
            "X-Iwa-Assertion",
            "x_iwa_anything",
            "X-IWA-",
        ] {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("EVIL\\mallory"),
            );
        }
        map.insert("x-remote-userx", HeaderValue::from_static("keep"));
        map.insert("x-iw", HeaderValue::from_static("keep"));
        map.insert("accept", HeaderValue::from_static("keep"));
        h.strip(&mut map);
        let mut left: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-iw", "x-remote-userx"]);
    }

    #[test]
    fn applies_identity() {
        let h = IdentityHeaders::default();
        let mut id =
            Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &BTreeMap::new());
        id.groups.push(Group {
            sid: Some("S-1-5-21-1-2-3-513".into()),
            name: Some("EX\\Sales, EMEA 100%".into()),
        });
        let mut map = HeaderMap::new();
        h.apply(&id, &mut map);
        assert_eq!(map["x-remote-user"], "alice@EX.TEST");
        assert_eq!(map["x-remote-user-principal"], "alice@EX.TEST");
        assert_eq!(map["x-remote-auth-method"], "Kerberos");
        assert_eq!(map["x-remote-groups"], "EX\\Sales%2C EMEA 100%25");
        assert_eq!(map["x-remote-group-sids"], "S-1-5-21-1-2-3-513");
        assert!(map.get("x-remote-user-sid").is_none());
    }

    #[test]
    fn non_ascii_values_are_percent_encoded() {
        assert_eq!(value("jürgen"), "j%C3%BCrgen");
        assert_eq!(value("a\r\nb"), "a%0D%0Ab");
        assert_eq!(value("plain user"), "plain user");
    }
}
