//! Authorization: a pure decision over (identity, rule). No I/O, no clock; the caller
//! executes the decision (sudo-rs style).

use crate::identity::Identity;

/// Who may pass a route. Empty lists mean "no constraint" (any authenticated user).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRule {
    /// `DOMAIN\user`, `user@REALM` or a SID; any one matching suffices.
    pub allow_users: Vec<String>,
    /// Group names (`DOMAIN\Group`) or SIDs; membership in any one suffices.
    pub allow_groups: Vec<String>,
    /// Group names or SIDs whose members are refused, whatever else matches.
    pub deny_groups: Vec<String>,
}

impl AccessRule {
    pub fn is_open(&self) -> bool {
        self.allow_users.is_empty() && self.allow_groups.is_empty() && self.deny_groups.is_empty()
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    Allow,
    /// Refused; `reason` completes "this page …" and names what was missing (never
    /// the user's full group list).
    Deny {
        reason: String,
    },
}

pub(crate) fn user_matches(identity: &Identity, entry: &str) -> bool {
    entry.eq_ignore_ascii_case(&identity.remote_user())
        || entry.eq_ignore_ascii_case(&identity.principal)
        || identity.sid.as_deref() == Some(entry)
}

pub(crate) fn in_group(identity: &Identity, entry: &str) -> bool {
    identity.groups.iter().any(|g| {
        g.sid.as_deref() == Some(entry)
            || g.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(entry))
    })
}

/// Decides whether `identity` may pass `rule`.
pub fn decide(identity: &Identity, rule: &AccessRule) -> Decision {
    if let Some(g) = rule.deny_groups.iter().find(|g| in_group(identity, g)) {
        return Decision::Deny {
            reason: format!("is closed to members of {g}"),
        };
    }
    if rule.allow_users.is_empty() && rule.allow_groups.is_empty() {
        return Decision::Allow;
    }
    if rule.allow_users.iter().any(|u| user_matches(identity, u))
        || rule.allow_groups.iter().any(|g| in_group(identity, g))
    {
        return Decision::Allow;
    }
    let reason = match (rule.allow_users.is_empty(), rule.allow_groups.is_empty()) {
        (true, false) => format!("membership in one of: {}", rule.allow_groups.join(", ")),
        (false, true) => "being one of its named users".to_owned(),
        _ => format!(
            "being a named user or a member of one of: {}",
            rule.allow_groups.join(", ")
        ),
    };
    Decision::Deny {
        reason: format!("requires {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AuthMethod, Group};
    use std::collections::BTreeMap;

    fn alice() -> Identity {
        let mut m = BTreeMap::new();
        m.insert("EX.TEST".to_owned(), "EX".to_owned());
        let mut id = Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &m);
        id.sid = Some("S-1-5-21-1-2-3-1104".into());
        id.groups = vec![
            Group {
                sid: Some("S-1-5-21-1-2-3-1200".into()),
                name: Some("EX\\Helpdesk Staff".into()),
            },
            Group {
                sid: Some("S-1-5-21-1-2-3-1201".into()),
                name: Some("EX\\All Staff".into()),
            },
        ];
        id
    }

    fn rule(users: &[&str], groups: &[&str], deny: &[&str]) -> AccessRule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        AccessRule {
            allow_users: v(users),
            allow_groups: v(groups),
            deny_groups: v(deny),
        }
    }

    #[test]
    fn open_rule_allows_anyone_authenticated() {
        assert_eq!(decide(&alice(), &AccessRule::default()), Decision::Allow);
    }

    #[test]
    fn users_match_by_any_spelling() {
        for u in [
            "EX\\alice",
            "ex\\ALICE",
            "alice@EX.TEST",
            "S-1-5-21-1-2-3-1104",
        ] {
            assert_eq!(
                decide(&alice(), &rule(&[u], &[], &[])),
                Decision::Allow,
                "{u}"
            );
        }
        assert!(matches!(
            decide(&alice(), &rule(&["EX\\bob"], &[], &[])),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn groups_by_name_or_sid_and_deny_wins() {
        assert_eq!(
            decide(&alice(), &rule(&[], &["ex\\all staff"], &[])),
            Decision::Allow
        );
        assert_eq!(
            decide(&alice(), &rule(&[], &["S-1-5-21-1-2-3-1200"], &[])),
            Decision::Allow
        );
        let d = decide(&alice(), &rule(&[], &["EX\\Sales"], &[]));
        assert_eq!(
            d,
            Decision::Deny {
                reason: "requires membership in one of: EX\\Sales".into()
            }
        );
        let d = decide(
            &alice(),
            &rule(&["EX\\alice"], &[], &["EX\\Helpdesk Staff"]),
        );
        assert!(matches!(d, Decision::Deny { reason } if reason.contains("Helpdesk")));
    }

    #[test]
    fn denial_does_not_list_the_users_groups() {
        let Decision::Deny { reason } = decide(&alice(), &rule(&[], &["EX\\Admins"], &[])) else {
            panic!("expected a denial");
        };
        assert!(!reason.contains("All Staff"));
    }
}
