//! NTLM through the gateway validated by Active Directory: `[ntlm] validator = "winbind"`
//! against the shared Samba AD DC (`SambaDc::standard()`), whose winbindd answers
//! libwbclient at /run/samba/winbindd. curl --ntlm and pyspnego (raw NTLM, NTLMSSP under
//! Negotiate, NTLM in SPNEGO) reach the backend as `EXAMPLE\alice` with her SIDs,
//! including nested groups; the DC's refusals (wrong password, unknown user, disabled
//! account) are 401s naming the NT status; winbind unavailable is a quick 503.
//!
//! A hung winbindd (timeout) and the bound on outstanding calls are unit-tested with an
//! injected transport in `crates/iwa/src/winbind/tests.rs`: the DC is shared by the whole
//! test run, so no test here may stop or freeze its winbindd.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use iwa_testrealm::samba::{
    SambaDc, AD_ALICE_PASSWORD, AD_BOB_PASSWORD, AD_CAROL_PASSWORD, ALL_STAFF, HELPDESK_STAFF,
    SALES,
};
use iwa_testrealm::EchoRequest;
use serde_json::Value;
use support::*;

fn dc() -> SambaDc {
    SambaDc::standard().unwrap_or_else(|e| panic!("Samba AD DC: {e}"))
}

fn winbind_config(realm: &MitRealm, backend: &str) -> GatewayConfig {
    GatewayConfig::new(realm, backend).kerberos_line(
        "\n[ntlm]\nvalidator = \"winbind\"\ndomain = \"EXAMPLE\"\ndns_domain = \"example.test\"\nwinbind_timeout = \"10s\"\n",
    )
}

fn curl_ntlm(gw: &Gateway, user: &str, password: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "30", "--ntlm", "-u"])
        .arg(format!("{user}:{password}"))
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .arg(gw.url("/ad"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
        started.elapsed(),
    )
}

fn header<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v["headers"]
        .as_array()
        .and_then(|h| h.iter().find(|p| p[0] == name).and_then(|p| p[1].as_str()))
}

fn group_sids(seen: &EchoRequest) -> Vec<String> {
    seen.header("x-remote-group-sids")
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn curl_ntlm_reaches_the_backend_as_alice_with_her_sids() {
    let dc = dc();
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &winbind_config(&realm, &echo.url()));
    let alice_sid = dc.user_sid("alice").unwrap();
    let helpdesk = dc.group_sid(HELPDESK_STAFF).unwrap();
    let all_staff = dc.group_sid(ALL_STAFF).unwrap();
    let domain_users = dc.group_sid("Domain Users").unwrap();
    let sales = dc.group_sid(SALES).unwrap();
    // With the domain, in another case, and without (the configured domain is assumed).
    for user in ["EXAMPLE\\alice", "example\\ALICE", "alice"] {
        let (code, body, _) = curl_ntlm(&gw, user, AD_ALICE_PASSWORD);
        assert_eq!(code, 200, "{user}: {body}\n{}", gw.log());
        let seen = EchoRequest::from_json(body.as_bytes()).unwrap();
        assert_eq!(
            seen.header("x-remote-user"),
            Some("EXAMPLE\\alice"),
            "{user}"
        );
        assert_eq!(
            seen.header("x-remote-user-principal"),
            Some("alice@EXAMPLE.TEST")
        );
        assert_eq!(seen.header("x-remote-auth-method"), Some("NTLM"));
        assert_eq!(seen.header("x-remote-user-sid"), Some(alice_sid.as_str()));
        let groups = group_sids(&seen);
        for (name, sid) in [
            (HELPDESK_STAFF, &helpdesk),
            (ALL_STAFF, &all_staff),
            ("Domain Users", &domain_users),
        ] {
            assert!(groups.contains(sid), "{name} {sid} missing from {groups:?}");
        }
        assert!(
            !groups.contains(&sales),
            "alice is not in Sales: {groups:?}"
        );
        assert!(!groups.contains(&alice_sid), "the user SID is not a group");
        let mut dedup = groups.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), groups.len(), "duplicates in {groups:?}");
        assert_eq!(seen.header("authorization"), None);
    }
    let (code, body, _) = curl_ntlm(&gw, "EXAMPLE\\bob", AD_BOB_PASSWORD);
    assert_eq!(code, 200, "{body}\n{}", gw.log());
    let seen = EchoRequest::from_json(body.as_bytes()).unwrap();
    assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\bob"));
    assert!(!group_sids(&seen).contains(&helpdesk));
}

#[test]
fn pyspnego_raw_ntlm_and_spnego_reach_the_backend_as_alice() {
    let dc = dc();
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &winbind_config(&realm, &echo.url()));
    let alice_sid = dc.user_sid("alice").unwrap();
    let all_staff = dc.group_sid(ALL_STAFF).unwrap();
    for mode in ["ntlm", "negotiate-raw", "spnego"] {
        let v = ntlm_pyspnego(
            &gw,
            &[
                "--mode",
                mode,
                "--user",
                "alice",
                "--domain",
                "EXAMPLE",
                "--password",
                AD_ALICE_PASSWORD,
            ],
        );
        assert_eq!(v["leg1"], 401, "{mode}: {v}");
        assert_eq!(v["leg2"], 200, "{mode}: {v}\n{}", gw.log());
        assert_eq!(
            header(&v, "x-remote-user"),
            Some("EXAMPLE\\alice"),
            "{mode}"
        );
        assert_eq!(
            header(&v, "x-remote-user-sid"),
            Some(alice_sid.as_str()),
            "{mode}"
        );
        assert!(
            header(&v, "x-remote-group-sids")
                .unwrap_or("")
                .split(',')
                .any(|s| s == all_staff),
            "{mode}: {v}"
        );
        // pyspnego sends a MIC (verified with the DC's session key) and, under SPNEGO,
        // checks our mechListMIC (it raises otherwise).
        assert_eq!(v["complete"], true, "{mode}: {v}");
        assert!(v.get("final_error").is_none(), "{mode}: {v}");
        assert_eq!(v["again"], 200, "{mode}: the connection stays alice");
    }
}

#[test]
fn the_domain_refusals_are_401_naming_the_nt_status() {
    let _dc = dc();
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &winbind_config(&realm, &echo.url()));
    let (code, _, _) = curl_ntlm(&gw, "EXAMPLE\\alice", "not-her-password");
    assert_eq!(code, 401);
    let (code, _, _) = curl_ntlm(&gw, "EXAMPLE\\mallory", AD_ALICE_PASSWORD);
    assert_eq!(code, 401);
    // carol's password is right; her account is disabled.
    let (code, _, _) = curl_ntlm(&gw, "EXAMPLE\\carol", AD_CAROL_PASSWORD);
    assert_eq!(code, 401);
    let log = gw.log();
    assert!(log.contains("NT_STATUS_WRONG_PASSWORD"), "{log}");
    assert!(log.contains("unknown user EXAMPLE\\mallory"), "{log}");
    assert!(log.contains("NT_STATUS_ACCOUNT_DISABLED"), "{log}");
    assert!(
        echo.requests().is_empty(),
        "a refused login reached the backend"
    );
}

#[test]
fn ntlmv1_is_refused_before_asking_the_domain() {
    let _dc = dc();
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &winbind_config(&realm, &echo.url()));
    let v = ntlm_pyspnego(
        &gw,
        &[
            "--mode",
            "ntlm",
            "--user",
            "alice",
            "--domain",
            "EXAMPLE",
            "--password",
            AD_ALICE_PASSWORD,
            "--lm-compat",
            "1",
        ],
    );
    assert_eq!(v["leg2"], 401, "{v}");
    let log = gw.log();
    assert!(
        log.contains("NTLMv1") || log.contains("NTLM2 session"),
        "{log}"
    );
}

/// libwbclient's `_NO_WINBINDD=1` makes every call in the gateway process fail as if
/// winbindd could not serve the domain, without touching the shared DC: the answer is a
/// quick 503 with a log line that says what to check, never a 401 or a hang.
#[test]
fn winbind_unavailable_is_a_quick_503() {
    let _dc = dc();
    let realm = realm();
    let echo = echo();
    let cfg = winbind_config(&realm, &echo.url()).env("_NO_WINBINDD", "1");
    let gw = Gateway::start(&realm, &cfg);
    let (code, body, took) = curl_ntlm(&gw, "EXAMPLE\\alice", AD_ALICE_PASSWORD);
    assert_eq!(code, 503, "{body}\n{}", gw.log());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let log = gw.log();
    assert!(log.contains("NTLM via winbind unavailable"), "{log}");
    assert!(log.contains("WBC_ERR_DOMAIN_NOT_FOUND"), "{log}");
    assert!(echo.requests().is_empty());
}

#[test]
fn iwa_check_reports_winbind() {
    let _dc = dc();
    let dir = TempDir::new("iwa-check-winbind").unwrap();
    let cfg = dir.path().join("iwa.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:1\"\n[backend]\nurl = \"http://127.0.0.1:2\"\n[ntlm]\nvalidator = \"winbind\"\ndomain = \"EXAMPLE\"\n",
    )
    .unwrap();
    let out = Command::new(iwa_bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("reachable, domain EXAMPLE"), "{text}");
    assert!(text.contains("NETLOGON OK"), "{text}");
    let out = Command::new(iwa_bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .env("_NO_WINBINDD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("winbindd is not reachable"), "{text}");
}
