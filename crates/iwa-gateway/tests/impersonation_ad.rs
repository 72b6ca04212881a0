//! Impersonation against a real Active Directory (Samba AD DC): alice, a member of
//! Helpdesk Staff (granted AllowImpersonation), acts as bob with the SID and groups
//! LDAP holds for him; a target with more rights (dave, in Sales, which a route needs),
//! a disabled account (carol) and the domain's Administrator are refused.

mod support;

use iwa_testrealm::samba::{
    SambaDc, AD_ALICE, AD_ALICE_PASSWORD, AD_BOB, AD_BOB_PASSWORD, ALL_STAFF, HELPDESK_STAFF, SALES,
};
use iwa_testrealm::EchoRequest;
use serde_json::Value;
use support::*;

/// `curl --negotiate` as an AD user with a cookie jar; extra args before the URL.
fn curl_ad(
    dc: &SambaDc,
    user: &str,
    password: &str,
    jar: &std::path::Path,
    url: &str,
    extra: &[&str],
) -> (u16, Vec<u8>, String) {
    let cc = dc.kinit(user, password).expect("kinit against the DC");
    let dir = TempDir::new("iwa-curl-ad").unwrap();
    let headers = dir.path().join("h");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "--negotiate",
            "-u",
            ":",
        ])
        .arg("-b")
        .arg(jar)
        .arg("-c")
        .arg(jar)
        .arg("-D")
        .arg(&headers)
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .env("KRB5_CONFIG", dc.krb5_conf())
        .env("KRB5CCNAME", cc.name())
        .output()
        .expect("curl");
    let text = out.stdout;
    let split = text.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&text[split..])
        .trim()
        .parse()
        .unwrap_or(0);
    let raw = std::fs::read_to_string(&headers).unwrap_or_default();
    (code, text[..split].to_vec(), raw)
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
    let origin = format!("Origin: http://localhost:{}", gw.addr().port());
    let jar = dir.path().join("alice.jar");
    let post = |user: &str| {
        curl_ad(
            &dc,
            AD_ALICE,
            AD_ALICE_PASSWORD,
            &jar,
            &gw.url("/.iwa/api/impersonation"),
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-H",
                &origin,
                "--data-binary",
                &start_body(user),
            ],
        )
    };
    let code_of = |body: &[u8]| -> String {
        serde_json::from_slice::<Value>(body).map_or_else(
            |_| String::from_utf8_lossy(body).into_owned(),
            |v| v["code"].as_str().unwrap_or("").to_owned(),
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
        let (got, body, _) = post(user);
        assert_eq!(
            (got, code_of(&body).as_str()),
            (status, code),
            "{user}\n{}",
            gw.log()
        );
    }
    // bob may not impersonate at all.
    let bob_jar = dir.path().join("bob.jar");
    let (got, body, _) = curl_ad(
        &dc,
        AD_BOB,
        AD_BOB_PASSWORD,
        &bob_jar,
        &gw.url("/.iwa/api/impersonation"),
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            &origin,
            "--data-binary",
            &start_body("EXAMPLE\\alice"),
        ],
    );
    assert_eq!((got, code_of(&body).as_str()), (403, "not_permitted"));

    // alice acts as bob: the backend sees bob's SID and groups as the DC has them.
    let (got, body, headers) = post("EXAMPLE\\bob");
    assert_eq!(got, 204, "{}\n{}", String::from_utf8_lossy(&body), gw.log());
    assert!(headers
        .to_ascii_lowercase()
        .contains("set-cookie: iwa_impersonation="));
    let (got, body, _) = curl_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &jar, &gw.url("/app"), &[]);
    assert_eq!(got, 200);
    let seen = EchoRequest::from_json(&body).unwrap();
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
    let (got, _, _) = curl_ad(
        &dc,
        AD_ALICE,
        AD_ALICE_PASSWORD,
        &jar,
        &gw.url("/.iwa/api/impersonation"),
        &[
            "-X",
            "DELETE",
            "-H",
            "Content-Type: application/json",
            "-H",
            &origin,
        ],
    );
    assert_eq!(got, 204);
    let (_, body, _) = curl_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &jar, &gw.url("/app"), &[]);
    let seen = EchoRequest::from_json(&body).unwrap();
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
