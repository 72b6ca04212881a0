//! Who a request comes from, once verified.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

/// How the identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum AuthMethod {
    Kerberos,
    Ntlm,
    Fake,
}

impl AuthMethod {
    /// The value of `X-Remote-Auth-Method`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Kerberos => "Kerberos",
            AuthMethod::Ntlm => "NTLM",
            AuthMethod::Fake => "Fake",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A group the user belongs to: its SID and, when resolved, its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub sid: Option<String>,
    pub name: Option<String>,
}

/// A verified identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The account name without realm or domain, e.g. `alice`.
    pub user: String,
    /// The Kerberos realm, e.g. `EXAMPLE.TEST`.
    pub realm: String,
    /// The NetBIOS domain, e.g. `EXAMPLE`, when known.
    pub domain: Option<String>,
    /// `user@REALM`.
    pub principal: String,
    /// The user's SID, when known.
    pub sid: Option<String>,
    pub groups: Vec<Group>,
    pub method: AuthMethod,
    /// When the credential behind this identity stops being valid (the Kerberos
    /// ticket's end time), if known.
    #[serde(skip)]
    pub expires: Option<SystemTime>,
}

impl Identity {
    /// Builds an identity from a Kerberos principal name as MIT displays it
    /// (`alice@EXAMPLE.TEST`, `svc/host@EXAMPLE.TEST`), mapping the realm to a NetBIOS
    /// domain through `realm_domains` when it is listed there.
    pub fn from_principal(
        principal: &str,
        method: AuthMethod,
        realm_domains: &BTreeMap<String, String>,
    ) -> Self {
        let (user, realm) = split_principal(principal);
        let domain = realm_domains
            .get(realm)
            .or_else(|| {
                realm_domains
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(realm))
                    .map(|(_, v)| v)
            })
            .cloned();
        Identity {
            user: user.to_owned(),
            realm: realm.to_owned(),
            domain,
            principal: principal.to_owned(),
            sid: None,
            groups: Vec::new(),
            method,
            expires: None,
        }
    }

    /// What IIS gives as REMOTE_USER: `DOMAIN\user` when the NetBIOS domain is known,
    /// else `user@REALM`.
    pub fn remote_user(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}\\{}", self.user),
            None => self.principal.clone(),
        }
    }
}

/// Splits `name@REALM` at the last `@` that is not escaped with a backslash
/// (RFC 1964 §2.1.1). A name without a realm gets an empty realm.
pub fn split_principal(principal: &str) -> (&str, &str) {
    let bytes = principal.as_bytes();
    let mut split = None;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'@' {
            split = Some(i);
        }
    }
    match split {
        // `i` is the index of an ASCII '@', so both slices fall on char boundaries.
        Some(i) => (&principal[..i], &principal[i + 1..]),
        None => (principal, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_last_unescaped_at() {
        assert_eq!(split_principal("alice@EX.TEST"), ("alice", "EX.TEST"));
        assert_eq!(split_principal("HTTP/web@EX.TEST"), ("HTTP/web", "EX.TEST"));
        assert_eq!(
            split_principal("bob\\@corp@EX.TEST"),
            ("bob\\@corp", "EX.TEST")
        );
        assert_eq!(split_principal("a\\@b"), ("a\\@b", ""));
        assert_eq!(split_principal("nobody"), ("nobody", ""));
    }

    #[test]
    fn remote_user_uses_netbios_domain_when_mapped() {
        let mut map = BTreeMap::new();
        let id = Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &map);
        assert_eq!(id.remote_user(), "alice@EX.TEST");
        map.insert("ex.test".to_owned(), "EX".to_owned());
        let id = Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &map);
        assert_eq!(id.remote_user(), "EX\\alice");
        assert_eq!(id.principal, "alice@EX.TEST");
        assert_eq!(id.user, "alice");
        assert_eq!(id.realm, "EX.TEST");
    }
}
