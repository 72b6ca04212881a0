//! Impersonation against a real Active Directory (Samba AD DC): alice, a member of
//! Helpdesk Staff (granted AllowImpersonation), acts as bob with the SID and groups
//! LDAP holds for him; a target with more rights (dave, in Sales, which a route needs),
//! a disabled account (carol) and the domain's Administrator are refused.

mod support;

use iwa_testrealm::samba::{
    SambaDc, AD_ALICE, AD_ALICE_PASSWORD, AD_BOB, AD_BOB_PASSWORD, ALL_STAFF, HELPDESK_STAFF, SALES,
};
use serde_json::Value;
use support::*;

/// As `user`, with the cookie jar `jar`; `extra` before the URL.
fn as_user(
    dc: &SambaDc,
    (user, password): (&str, &str),
    jar: &std::path::Path,
    url: &str,
    extra: &[String],
) -> CurlResult {
    let jar = jar.display().to_string();
    let mut args = vec!["-b", jar.as_str(), "-c", jar.as_str()];
    args.extend(extra.iter().map(String::as_str));
    curl_ad(dc, user, password, url, &args)
}

fn code_of(r: &CurlResult) -> String {
    serde_json::from_slice::<Value>(&r.body).map_or_else(
        |_| r.text(),
        |v| v["code"].as_str().unwrap_or("").to_owned(),
    )
}

fn start_body(user: &str) -> String {
    serde_json::json!({ "user": user, "reason": "INC-4711" }).to_string()
}

#[test]
fn helpdesk_member_acts_as_bob_with_his_directory_identity() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let dir = TempDir::new("iwa-imp-ad").unwrap();
    let sales = dc.group_sid(SALES).unwrap();
    let rule = format!(
        "\n[[route]]\npath = \"/sales\"\nallow_groups = [{}]\n",
        toml_str(&sales)
    );
    let gw = ad_impersonation_gateway(&realm, &dc, &echo.url(), dir.path(), &rule);
    let origin = format!("http://localhost:{}", gw.addr().port());
    let api = gw.url("/.iwa/api/impersonation");
    let alice = (AD_ALICE, AD_ALICE_PASSWORD);
    let jar = dir.path().join("alice.jar");
    let post = |user: &str| {
        let body = start_body(user);
        as_user(
            &dc,
            alice,
            &jar,
            &api,
            &json_request_args("POST", &origin, Some(&body)),
        )
    };

    // Refusals first: more rights (dave is in Sales, a route needs it; alice is not),
    // disabled (carol), privileged (Administrator), unknown.
    for (user, status, code) in [
        ("EXAMPLE\\dave", 403, "escalation"),
        ("EXAMPLE\\carol", 409, "target_disabled"),
        ("EXAMPLE\\Administrator", 403, "protected_target"),
        ("EXAMPLE\\nosuchuser", 404, "unknown_user"),
        // A computer account is not a person to act as.
        ("EXAMPLE\\DC1$", 404, "unknown_user"),
    ] {
        let r = post(user);
        assert_eq!(
            (r.status, code_of(&r).as_str()),
            (status, code),
            "{user}\n{}",
            gw.log()
        );
    }
    // bob may not impersonate at all.
    let bob_jar = dir.path().join("bob.jar");
    let body = start_body("EXAMPLE\\alice");
    let r = as_user(
        &dc,
        (AD_BOB, AD_BOB_PASSWORD),
        &bob_jar,
        &api,
        &json_request_args("POST", &origin, Some(&body)),
    );
    assert_eq!((r.status, code_of(&r).as_str()), (403, "not_permitted"));

    // alice acts as bob: the backend sees bob's SID and groups as the DC has them.
    let r = post("EXAMPLE\\bob");
    assert_eq!(r.status, 204, "{}\n{}", r.text(), gw.log());
    assert!(r
        .header("set-cookie")
        .is_some_and(|c| c.starts_with("iwa_impersonation=")));
    let r = as_user(&dc, alice, &jar, &gw.url("/app"), &[]);
    assert_eq!(r.status, 200);
    let seen = r.echo();
    assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\bob"));
    assert_eq!(seen.header("x-remote-impersonator"), Some("EXAMPLE\\alice"));
    let bob_sid = dc.user_sid(AD_BOB).unwrap();
    assert_eq!(seen.header("x-remote-user-sid"), Some(bob_sid.as_str()));
    let group_sids = seen.header("x-remote-group-sids").unwrap_or("");
    let domain_users = format!("{}-513", dc.domain_sid());
    assert!(group_sids.contains(&domain_users), "{group_sids}");
    let helpdesk = dc.group_sid(HELPDESK_STAFF).unwrap();
    assert!(
        !group_sids.contains(&helpdesk),
        "bob is not in Helpdesk Staff: {group_sids}"
    );
    let names = seen.header("x-remote-groups").unwrap_or("");
    assert!(names.contains("EXAMPLE\\Domain Users"), "{names}");
    for g in dc.token_groups(AD_BOB).unwrap() {
        if g.starts_with(&format!("{}-", dc.domain_sid())) {
            assert!(
                group_sids.contains(&g),
                "tokenGroups {g} missing: {group_sids}"
            );
        }
    }
    // The real user's nested groups are not leaked into the effective identity.
    let all_staff = dc.group_sid(ALL_STAFF).unwrap();
    let bob_in_all_staff = dc.token_groups(AD_BOB).unwrap().contains(&all_staff);
    assert_eq!(group_sids.contains(&all_staff), bob_in_all_staff);

    // Stop.
    let r = as_user(
        &dc,
        alice,
        &jar,
        &api,
        &json_request_args("DELETE", &origin, None),
    );
    assert_eq!(r.status, 204);
    let seen = as_user(&dc, alice, &jar, &gw.url("/app"), &[]).echo();
    assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\alice"));
    assert_eq!(seen.header("x-remote-impersonator"), None);

    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    for event in [
        "impersonation_start",
        "impersonation_request",
        "impersonation_stop",
        "impersonation_refused",
    ] {
        assert!(
            audit.contains(event),
            "{event} missing from the audit log:\n{audit}"
        );
    }
    assert!(audit.contains(&bob_sid), "the target's SID is audited");
}
