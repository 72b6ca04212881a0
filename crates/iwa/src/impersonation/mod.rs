//! Who may act as whom: the pure decision behind impersonation (no I/O, no clock).
//!
//! **Permissions** of an identity are, precisely:
//! - every configured access rule it satisfies (`rule:<n>`, for the n-th route rule that
//!   is not open to everyone authenticated);
//! - the iwa permissions it holds: `AllowImpersonation`, `IncreasePermissions`;
//! - its privileged-group memberships (`privileged:<SID or name>`): Domain Admins
//!   (RID 512), Schema Admins (518), Enterprise Admins (519), Group Policy Creator Owners
//!   (520), Administrators (S-1-5-32-544), Account/Server/Backup/Print Operators
//!   (S-1-5-32-548/549/551/550).
//!
//! An actor may impersonate a target only when all hold:
//! 1. the actor holds `AllowImpersonation`;
//! 2. the actor is not impersonating already (no nesting);
//! 3. the target is not the actor;
//! 4. the target is not protected: listed in `never_impersonate`, in a privileged group,
//!    or itself holding `AllowImpersonation`;
//! 5. the target's permissions are a subset of the actor's — unless the actor holds
//!    `IncreasePermissions`.

use std::collections::BTreeSet;

use crate::access::{
    decide as decide_access, in_group, user_matches, AccessRule, Decision as AccessDecision,
};
use crate::identity::Identity;

mod cookie;
pub use cookie::{
    Active, Ignored, ImpersonationSettings, Impersonator, Refusal, Resolution, Started, Stopped,
    MAX_REASON_CHARS,
};

/// Who holds which impersonation permission, and who is never impersonated. Entries are
/// users (`DOMAIN\user`, `user@REALM`, SID) or groups (name or SID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpersonationPolicy {
    pub allow_impersonation: Vec<String>,
    pub increase_permissions: Vec<String>,
    pub never_impersonate: Vec<String>,
}

/// One element of an identity's permission set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Rule(usize),
    AllowImpersonation,
    IncreasePermissions,
    Privileged(String),
}

/// RIDs of domain groups that confer administrative power.
const PRIVILEGED_RIDS: [u32; 4] = [512, 518, 519, 520];
/// Built-in privileged groups.
const PRIVILEGED_BUILTIN: [&str; 5] = [
    "S-1-5-32-544",
    "S-1-5-32-548",
    "S-1-5-32-549",
    "S-1-5-32-550",
    "S-1-5-32-551",
];
/// Names of the privileged groups, for identities that carry names only.
const PRIVILEGED_NAMES: [&str; 5] = [
    "Domain Admins",
    "Enterprise Admins",
    "Schema Admins",
    "Administrators",
    "Group Policy Creator Owners",
];

fn is_privileged_group(sid: Option<&str>, name: Option<&str>) -> bool {
    if let Some(sid) = sid {
        if PRIVILEGED_BUILTIN.contains(&sid) {
            return true;
        }
        if sid.starts_with("S-1-5-21-") {
            if let Some(rid) = sid.rsplit('-').next().and_then(|r| r.parse::<u32>().ok()) {
                if PRIVILEGED_RIDS.contains(&rid) {
                    return true;
                }
            }
        }
    }
    name.is_some_and(|n| {
        let bare = n.rsplit('\\').next().unwrap_or(n);
        PRIVILEGED_NAMES
            .iter()
            .any(|p| p.eq_ignore_ascii_case(bare))
    })
}

fn holds(identity: &Identity, entries: &[String]) -> bool {
    entries
        .iter()
        .any(|e| user_matches(identity, e) || in_group(identity, e))
}

/// The permission set of `identity` (see the module docs) under `policy` and the
/// configured route `rules`.
pub fn permissions(
    identity: &Identity,
    policy: &ImpersonationPolicy,
    rules: &[AccessRule],
) -> BTreeSet<Permission> {
    let mut set = BTreeSet::new();
    for (i, rule) in rules.iter().enumerate() {
        if !rule.is_open() && decide_access(identity, rule) == AccessDecision::Allow {
            set.insert(Permission::Rule(i));
        }
    }
    if holds(identity, &policy.allow_impersonation) {
        set.insert(Permission::AllowImpersonation);
    }
    if holds(identity, &policy.increase_permissions) {
        set.insert(Permission::IncreasePermissions);
    }
    for g in &identity.groups {
        if is_privileged_group(g.sid.as_deref(), g.name.as_deref()) {
            let key = g.sid.clone().or_else(|| g.name.clone()).unwrap_or_default();
            set.insert(Permission::Privileged(key));
        }
    }
    set
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    Allow,
    Deny { code: &'static str, reason: String },
}

fn deny(code: &'static str, reason: impl Into<String>) -> Decision {
    Decision::Deny {
        code,
        reason: reason.into(),
    }
}

/// The same account: by SID when both have one, else by principal or `DOMAIN\user`
/// (a login without a PAC has no SID unless the directory supplied one).
fn same_user(a: &Identity, b: &Identity) -> bool {
    match (&a.sid, &b.sid) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => {
            a.principal.eq_ignore_ascii_case(&b.principal)
                || (a.domain.is_some() && a.remote_user().eq_ignore_ascii_case(&b.remote_user()))
        }
    }
}

/// May `actor` (the real, authenticated user) act as `target`?
pub fn decide(
    actor: &Identity,
    actor_is_impersonating: bool,
    target: &Identity,
    policy: &ImpersonationPolicy,
    rules: &[AccessRule],
) -> Decision {
    let actor_perms = permissions(actor, policy, rules);
    if !actor_perms.contains(&Permission::AllowImpersonation) {
        return deny("not_permitted", "you do not hold AllowImpersonation");
    }
    if actor_is_impersonating {
        return deny(
            "nested",
            "stop the current impersonation first; impersonation cannot be nested",
        );
    }
    if same_user(actor, target) {
        return deny("self", "you cannot impersonate yourself");
    }
    let target_perms = permissions(target, policy, rules);
    if holds(target, &policy.never_impersonate) {
        return deny(
            "protected_target",
            format!("{} is never impersonated here", target.remote_user()),
        );
    }
    if let Some(Permission::Privileged(g)) = target_perms
        .iter()
        .find(|p| matches!(p, Permission::Privileged(_)))
    {
        return deny(
            "protected_target",
            format!("{} is in a privileged group ({g})", target.remote_user()),
        );
    }
    if target_perms.contains(&Permission::AllowImpersonation) {
        return deny(
            "protected_target",
            format!(
                "{} may impersonate others and is therefore never impersonated",
                target.remote_user()
            ),
        );
    }
    if !actor_perms.contains(&Permission::IncreasePermissions)
        && !target_perms.is_subset(&actor_perms)
    {
        return deny(
            "escalation",
            format!(
                "{} has permissions you do not have (IncreasePermissions is required)",
                target.remote_user()
            ),
        );
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AuthMethod, Group};
    use std::collections::BTreeMap;

    const D: &str = "S-1-5-21-1-2-3";

    pub(super) fn user(name: &str, rid: u32, groups: &[(&str, u32)]) -> Identity {
        let mut m = BTreeMap::new();
        m.insert("EX.TEST".to_owned(), "EX".to_owned());
        let mut id = Identity::from_principal(&format!("{name}@EX.TEST"), AuthMethod::Kerberos, &m);
        id.sid = Some(format!("{D}-{rid}"));
        id.groups = groups
            .iter()
            .map(|(n, r)| Group {
                sid: Some(format!("{D}-{r}")),
                name: Some(format!("EX\\{n}")),
            })
            .collect();
        id
    }

    pub(super) fn policy() -> ImpersonationPolicy {
        ImpersonationPolicy {
            allow_impersonation: vec!["EX\\Helpdesk".into()],
            increase_permissions: vec!["EX\\Support Leads".into()],
            never_impersonate: vec!["EX\\ceo".into()],
        }
    }

    pub(super) fn rules() -> Vec<AccessRule> {
        vec![
            AccessRule {
                allow_groups: vec!["EX\\Sales".into()],
                ..Default::default()
            },
            AccessRule {
                allow_groups: vec!["EX\\Finance".into()],
                ..Default::default()
            },
        ]
    }

    #[test]
    fn helpdesk_may_act_as_a_less_privileged_user() {
        let actor = user("hd", 1001, &[("Helpdesk", 1100), ("Sales", 1200)]);
        let target = user("bob", 1002, &[("Sales", 1200)]);
        assert_eq!(
            decide(&actor, false, &target, &policy(), &rules()),
            Decision::Allow
        );
    }

    #[test]
    fn every_refusal() {
        let p = policy();
        let r = rules();
        let hd = user("hd", 1001, &[("Helpdesk", 1100)]);
        let bob = user("bob", 1002, &[]);
        let code = |d: Decision| match d {
            Decision::Deny { code, .. } => code,
            Decision::Allow => "allow",
        };
        assert_eq!(code(decide(&bob, false, &hd, &p, &r)), "not_permitted");
        assert_eq!(code(decide(&hd, true, &bob, &p, &r)), "nested");
        assert_eq!(code(decide(&hd, false, &hd.clone(), &p, &r)), "self");
        assert_eq!(
            code(decide(&hd, false, &user("ceo", 1003, &[]), &p, &r)),
            "protected_target"
        );
        assert_eq!(
            code(decide(
                &hd,
                false,
                &user("adm", 1004, &[("Domain Admins", 512)]),
                &p,
                &r
            )),
            "protected_target"
        );
        assert_eq!(
            code(decide(
                &hd,
                false,
                &user("hd2", 1005, &[("Helpdesk", 1100)]),
                &p,
                &r
            )),
            "protected_target"
        );
        let finance = user("fin", 1006, &[("Finance", 1300)]);
        assert_eq!(code(decide(&hd, false, &finance, &p, &r)), "escalation");
        let lead = user("lead", 1007, &[("Helpdesk", 1100), ("Support Leads", 1400)]);
        assert_eq!(decide(&lead, false, &finance, &p, &r), Decision::Allow);
    }

    #[test]
    fn permission_set_is_rules_plus_grants_plus_privileged_groups() {
        let id = user(
            "x",
            1,
            &[("Sales", 1200), ("Helpdesk", 1100), ("Administrators", 0)],
        );
        let mut id = id;
        id.groups.push(Group {
            sid: Some("S-1-5-32-544".into()),
            name: None,
        });
        let set = permissions(&id, &policy(), &rules());
        assert!(set.contains(&Permission::Rule(0)));
        assert!(!set.contains(&Permission::Rule(1)));
        assert!(set.contains(&Permission::AllowImpersonation));
        assert!(!set.contains(&Permission::IncreasePermissions));
        assert!(set.contains(&Permission::Privileged("S-1-5-32-544".into())));
    }

    #[test]
    fn privileged_groups_by_sid_or_name() {
        assert!(is_privileged_group(Some("S-1-5-21-9-9-9-512"), None));
        assert!(is_privileged_group(Some("S-1-5-21-9-9-9-519"), None));
        assert!(!is_privileged_group(Some("S-1-5-21-9-9-9-513"), None));
        assert!(is_privileged_group(None, Some("EXAMPLE\\Domain Admins")));
        assert!(!is_privileged_group(None, Some("EXAMPLE\\Domain Users")));
    }
}
