//! Group names and fallbacks through LDAP against a real Active Directory (Samba AD DC):
//! SIDs from the PAC are named `EXAMPLE\Group` by `<SID=…>` lookups, rules match those
//! names, `tokenGroups` stands in for a missing PAC, LDAP down leaves SIDs only (quickly),
//! and a static directory file names groups with no LDAP at all. `resolve_user` (the
//! target of impersonation) finds users by name with their SIDs, groups and state.
//! TLS (`ldaps://`, StartTLS) is checked through a relay with a test CA (and against
//! the DC's own TLS); the relay is also how LDAP is stopped mid-test and brought back.

mod ldap_relay;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use iwa::directory::{Directory, DirectorySettings, LdapBackend, LdapSettings};
use iwa_testrealm::samba::{
    SambaDc, AD_ADMIN_PASSWORD, AD_ALICE, AD_ALICE_PASSWORD, AD_BASE_DN, AD_BOB, AD_BOB_PASSWORD,
    AD_CAROL, AD_DAVE, AD_DAVE_PASSWORD, ALL_STAFF, DC_IP, HELPDESK_STAFF, SALES,
};
use iwa_testrealm::EchoRequest;
use ldap_relay::{Mode, Relay, TestPki};
use support::*;

fn ad_gateway(
    realm: &iwa_testrealm::MitRealm,
    dc: &SambaDc,
    backend: &str,
    extra: &str,
) -> Gateway {
    let mut cfg = GatewayConfig::new(realm, backend)
        .keytab(dc.http_keytab())
        .kerberos_line(extra);
    cfg.env
        .push(("KRB5_CONFIG".into(), dc.krb5_conf().display().to_string()));
    Gateway::start(realm, &cfg)
}

/// `[ldap]` for the DC with the admin's simple bind; the password file (mode 0600) lives
/// in `dir`.
fn ldap_section(dc: &SambaDc, dir: &std::path::Path, url: &str) -> String {
    let pw = dir.join("ldap.password");
    std::fs::write(&pw, format!("{AD_ADMIN_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "\n[ldap]\nurl = {}\nbase_dn = {}\nbind_dn = {}\nbind_password_file = {}\ndomain = \"EXAMPLE\"\ntimeout = \"3s\"\n",
        toml_str(url),
        toml_str(AD_BASE_DN),
        toml_str(&dc.admin_bind_dn()),
        toml_str(&pw.display().to_string()),
    )
}

/// A private temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "iwa-ldap-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn list(seen: &EchoRequest, name: &str) -> Vec<String> {
    seen.header(name)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn ldap_names_the_pac_groups() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let gw = ad_gateway(
        &realm,
        &dc,
        &echo.url(),
        &ldap_section(&dc, tmp.path(), &dc.ldap_url()),
    );
    for _ in 0..2 {
        // The second round is answered from the cache.
        let (code, body) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/whoami"));
        assert_eq!(
            code,
            200,
            "{}\n{}",
            String::from_utf8_lossy(&body),
            gw.log()
        );
        let seen = EchoRequest::from_json(&body).unwrap();
        assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\alice"));
        let names = list(&seen, "x-remote-groups");
        let sids = list(&seen, "x-remote-group-sids");
        for (name, sid) in [
            (HELPDESK_STAFF, dc.group_sid(HELPDESK_STAFF).unwrap()),
            (ALL_STAFF, dc.group_sid(ALL_STAFF).unwrap()),
        ] {
            let full = format!("EXAMPLE\\{name}");
            assert!(
                names.contains(&full),
                "{full} missing from {names:?}\n{}",
                gw.log()
            );
            assert!(sids.contains(&sid), "{sid} missing from {sids:?}");
        }
        assert!(
            names.contains(&"EXAMPLE\\Domain Users".to_owned()),
            "{names:?}"
        );
        // Every group name belongs to a SID that is sent too (no name without a SID).
        assert!(names.len() <= sids.len(), "{names:?} vs {sids:?}");
    }
}

#[test]
fn allow_groups_by_name_through_ldap() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let extra = format!(
        "{}\n[[route]]\npath = \"/staff\"\nallow_groups = [\"EXAMPLE\\\\All Staff\"]\n",
        ldap_section(&dc, tmp.path(), &dc.ldap_url())
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    let (code, _) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/staff/board"));
    assert_eq!(
        code,
        200,
        "alice is in All Staff through Helpdesk Staff\n{}",
        gw.log()
    );
    let (code, body) = curl_negotiate_ad(&dc, AD_BOB, AD_BOB_PASSWORD, &gw.url("/staff/board"));
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn token_groups_stand_in_for_a_missing_pac() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let extra = format!(
        "use_pac = false\nrealm_domains = {{ \"EXAMPLE.TEST\" = \"EXAMPLE\" }}\n{}",
        ldap_section(&dc, tmp.path(), &dc.ldap_url())
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    let (code, body) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/"));
    assert_eq!(code, 200, "{}", gw.log());
    let seen = EchoRequest::from_json(&body).unwrap();
    assert_eq!(seen.header("x-remote-user-sid"), None, "no PAC read");
    let sids = list(&seen, "x-remote-group-sids");
    let mut want = dc.token_groups(AD_ALICE).unwrap();
    want.sort();
    let mut got = sids.clone();
    got.sort();
    assert_eq!(got, want, "{}", gw.log());
    let names = list(&seen, "x-remote-groups");
    assert!(
        names.contains(&"EXAMPLE\\All Staff".to_owned()),
        "{names:?}"
    );
}

#[test]
fn ldap_down_forwards_sids_only_without_hanging() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let extra = format!(
        "{}\n[[route]]\npath = \"/staff\"\nallow_groups = [\"EXAMPLE\\\\All Staff\"]\n",
        ldap_section(&dc, tmp.path(), "ldap://127.0.0.1:1")
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    for _ in 0..3 {
        let started = Instant::now();
        let (code, body) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/whoami"));
        let took = started.elapsed();
        assert_eq!(code, 200, "{}", gw.log());
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let seen = EchoRequest::from_json(&body).unwrap();
        assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\alice"));
        let sids = list(&seen, "x-remote-group-sids");
        assert!(sids.contains(&dc.group_sid(ALL_STAFF).unwrap()), "{sids:?}");
        let names = list(&seen, "x-remote-groups");
        assert!(
            names.iter().all(|n| !n.starts_with("EXAMPLE\\")),
            "no domain names without LDAP: {names:?}"
        );
    }
    // A rule by name cannot be met without names; a rule by SID still could.
    let (code, _) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/staff/x"));
    assert_eq!(code, 403);
    let log = gw.log();
    assert_eq!(
        log.matches("directory unavailable").count(),
        1,
        "one warning per interval, not per request:\n{log}"
    );
}

#[test]
fn static_directory_file_names_groups_without_ldap() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let file = tmp.path().join("directory.toml");
    std::fs::write(
        &file,
        format!(
            "[users]\n\"EXAMPLE\\\\alice\" = {}\n\n[groups.\"EXAMPLE\\\\Helpdesk Staff\"]\nsid = {}\nmembers = [\"EXAMPLE\\\\alice\"]\n\n[groups.\"EXAMPLE\\\\All Staff\"]\nsid = {}\nmembers = [\"EXAMPLE\\\\Helpdesk Staff\"]\n",
            toml_str(&dc.user_sid(AD_ALICE).unwrap()),
            toml_str(&dc.group_sid(HELPDESK_STAFF).unwrap()),
            toml_str(&dc.group_sid(ALL_STAFF).unwrap()),
        ),
    )
    .unwrap();
    let extra = format!(
        "\n[directory]\nfile = {}\n\n[[route]]\npath = \"/staff\"\nallow_groups = [\"EXAMPLE\\\\All Staff\"]\n",
        toml_str(&file.display().to_string())
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    let (code, body) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/staff/x"));
    assert_eq!(code, 200, "{}", gw.log());
    let seen = EchoRequest::from_json(&body).unwrap();
    let names = list(&seen, "x-remote-groups");
    assert!(
        names.contains(&"EXAMPLE\\Helpdesk Staff".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"EXAMPLE\\All Staff".to_owned()),
        "{names:?}"
    );
    let (code, _) = curl_negotiate_ad(&dc, AD_BOB, AD_BOB_PASSWORD, &gw.url("/staff/x"));
    assert_eq!(code, 403);
}

/// A library-level directory on the DC (the admin's simple bind over plain LDAP, which
/// the test DC allows), with `settings` for the cache.
fn ldap_directory(dc: &SambaDc, dir: &std::path::Path, settings: DirectorySettings) -> Directory {
    let pw = dir.join("lib-ldap.password");
    std::fs::write(&pw, format!("{AD_ADMIN_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let backend = LdapBackend::new(LdapSettings {
        url: dc.ldap_url(),
        base_dn: AD_BASE_DN.into(),
        bind_dn: Some(dc.admin_bind_dn()),
        bind_password_file: Some(pw),
        timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .unwrap();
    Directory::new(std::sync::Arc::new(backend), settings)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_user_finds_impersonation_targets() {
    let dc = tokio::task::spawn_blocking(|| SambaDc::standard().expect("Samba AD DC"))
        .await
        .unwrap();
    let tmp = TempDir::new();
    // No domain configured: the directory reads its NetBIOS name itself.
    let dir = ldap_directory(
        &dc,
        tmp.path(),
        DirectorySettings {
            timeout: Duration::from_secs(5),
            ..Default::default()
        },
    );

    let bob = dir
        .resolve_user("EXAMPLE\\bob")
        .await
        .expect("directory answers")
        .expect("bob exists");
    assert!(!bob.disabled);
    let id = &bob.identity;
    assert_eq!(id.user, "bob");
    assert_eq!(id.domain.as_deref(), Some("EXAMPLE"));
    assert_eq!(id.realm, "EXAMPLE.TEST");
    assert_eq!(id.principal, "bob@EXAMPLE.TEST");
    assert_eq!(id.remote_user(), "EXAMPLE\\bob");
    assert_eq!(
        id.sid.as_deref(),
        Some(dc.user_sid(AD_BOB).unwrap().as_str())
    );
    let sids: Vec<String> = id.groups.iter().filter_map(|g| g.sid.clone()).collect();
    assert_eq!(sorted(sids), sorted(dc.token_groups(AD_BOB).unwrap()));
    let domain_users = format!("{}-513", dc.domain_sid());
    let du = id
        .groups
        .iter()
        .find(|g| g.sid.as_deref() == Some(domain_users.as_str()))
        .expect("the primary group is included");
    assert_eq!(du.name.as_deref(), Some("EXAMPLE\\Domain Users"));

    // The same account by UPN and bare name.
    for name in ["bob@EXAMPLE.TEST", "bob@example.test", "BOB"] {
        let r = dir.resolve_user(name).await.unwrap().expect(name);
        assert_eq!(r.identity.sid, id.sid, "{name}");
    }

    let alice = dir.resolve_user("alice").await.unwrap().expect("alice");
    assert!(!alice.disabled);
    for g in [HELPDESK_STAFF, ALL_STAFF] {
        let sid = dc.group_sid(g).unwrap();
        let found = alice
            .identity
            .groups
            .iter()
            .find(|x| x.sid.as_deref() == Some(sid.as_str()))
            .unwrap_or_else(|| panic!("{g} missing: {:?}", alice.identity.groups));
        assert_eq!(found.name, Some(format!("EXAMPLE\\{g}")));
    }

    let carol = dir.resolve_user(AD_CAROL).await.unwrap().expect("carol");
    assert!(carol.disabled, "carol is disabled");
    assert_eq!(
        carol.identity.sid.as_deref(),
        Some(dc.user_sid(AD_CAROL).unwrap().as_str())
    );

    for nobody in [
        "nobody",
        "OTHER\\bob",
        "bob@OTHER.TEST",
        // Escaped, so it matches an account literally named `*`, not every account.
        "*",
        "b*",
        "bob)(objectClass=*",
    ] {
        assert_eq!(dir.resolve_user(nobody).await, Ok(None), "{nobody}");
    }
}

/// The DC's plain LDAP port, where the relays forward to.
fn dc_ldap() -> std::net::SocketAddr {
    std::net::SocketAddr::from((DC_IP, 389))
}

/// Logs in as `user` and returns the backend's view (status 200 asserted).
fn login(gw: &Gateway, dc: &SambaDc, user: &str, password: &str) -> (EchoRequest, Duration) {
    let started = Instant::now();
    let (code, body) = curl_negotiate_ad(dc, user, password, &gw.url("/whoami"));
    let took = started.elapsed();
    assert_eq!(
        code,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        gw.log()
    );
    (EchoRequest::from_json(&body).unwrap(), took)
}

#[test]
fn ldaps_with_a_ca_file_names_groups() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let pki = TestPki::new(tmp.path());
    let relay = Relay::start(dc_ldap(), Mode::Ldaps(pki.server_config()));
    // By name: the certificate names `localhost`, and the host name is checked.
    let url = format!("ldaps://localhost:{}", relay.port());
    let extra = format!(
        "{}ca_file = {}\n",
        ldap_section(&dc, tmp.path(), &url),
        toml_str(&pki.ca.display().to_string())
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    let (seen, _) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
    let names = list(&seen, "x-remote-groups");
    assert!(
        names.contains(&"EXAMPLE\\All Staff".to_owned()),
        "{names:?}\n{}",
        gw.log()
    );
    assert!(!gw.log().contains("directory unavailable"), "{}", gw.log());
}

#[test]
fn starttls_with_a_ca_file_names_groups() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let pki = TestPki::new(tmp.path());
    let relay = Relay::start(dc_ldap(), Mode::StartTls(pki.server_config()));
    let url = format!("ldap://localhost:{}", relay.port());
    let extra = format!(
        "{}starttls = true\nca_file = {}\n",
        ldap_section(&dc, tmp.path(), &url),
        toml_str(&pki.ca.display().to_string())
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    let (seen, _) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
    let names = list(&seen, "x-remote-groups");
    assert!(
        names.contains(&"EXAMPLE\\All Staff".to_owned()),
        "{names:?}\n{}",
        gw.log()
    );
}

#[test]
fn tls_failures_fall_back_to_sids_with_a_clear_error() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let pki = TestPki::new(tmp.path());
    let relay = Relay::start(dc_ldap(), Mode::Ldaps(pki.server_config()));
    let port = relay.port();
    for (what, url, ca) in [
        // A certificate from a CA the gateway was not told to trust.
        (
            "wrong CA",
            format!("ldaps://localhost:{port}"),
            &pki.other_ca,
        ),
        // The right CA, but the certificate names `localhost`, not 127.0.0.1.
        ("wrong name", format!("ldaps://127.0.0.1:{port}"), &pki.ca),
    ] {
        let extra = format!(
            "{}ca_file = {}\n",
            ldap_section(&dc, tmp.path(), &url),
            toml_str(&ca.display().to_string())
        );
        let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
        let (seen, took) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
        assert!(took < Duration::from_secs(8), "{what}: took {took:?}");
        let sids = list(&seen, "x-remote-group-sids");
        assert!(
            sids.contains(&dc.group_sid(ALL_STAFF).unwrap()),
            "{what}: {sids:?}"
        );
        let names = list(&seen, "x-remote-groups");
        assert!(
            names.iter().all(|n| !n.starts_with("EXAMPLE\\")),
            "{what}: no names without a trusted directory: {names:?}"
        );
        let log = gw.log();
        assert!(
            log.contains("TLS with the directory failed") && log.contains("certificate"),
            "{what}: a clear error in the log:\n{log}"
        );
    }
}

#[test]
fn tls_against_the_dc_itself() {
    // Samba's own LDAPS and StartTLS, with its autogenerated certificate. That
    // certificate names no host in subjectAltName, so no name can be verified: only
    // the escape hatch gets through, and says so in the log.
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    for (url, tls_line) in [
        (format!("ldap://{DC_IP}"), "starttls = true\n"),
        (format!("ldaps://{DC_IP}"), ""),
    ] {
        let extra = format!(
            "{}{tls_line}dangerous_skip_tls_verify = true\n",
            ldap_section(&dc, tmp.path(), &url)
        );
        let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
        let (seen, _) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
        let names = list(&seen, "x-remote-groups");
        assert!(
            names.contains(&"EXAMPLE\\All Staff".to_owned()),
            "{url}: {names:?}\n{}",
            gw.log()
        );
        assert!(
            gw.log().contains("dangerous_skip_tls_verify"),
            "the escape hatch is logged:\n{}",
            gw.log()
        );
    }
}

#[test]
fn ldap_stopped_mid_test_then_back() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let mut relay = Relay::start(dc_ldap(), Mode::Plain);
    let url = format!("ldap://127.0.0.1:{}", relay.port());
    let extra = format!(
        "{}backoff = \"1s\"\nmax_backoff = \"1s\"\n",
        ldap_section(&dc, tmp.path(), &url)
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    let sales = format!("EXAMPLE\\{SALES}");
    let sales_sid = dc.group_sid(SALES).unwrap();

    // Up: names.
    let (seen, _) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
    assert!(
        list(&seen, "x-remote-groups").contains(&"EXAMPLE\\All Staff".to_owned()),
        "{}",
        gw.log()
    );

    // LDAP goes away (listener and the open connection). Dave's Sales group is in no
    // cache yet: he still gets in, at once, with SIDs only.
    relay.stop();
    let (seen, took) = login(&gw, &dc, AD_DAVE, AD_DAVE_PASSWORD);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(list(&seen, "x-remote-group-sids").contains(&sales_sid));
    assert!(
        !list(&seen, "x-remote-groups").contains(&sales),
        "{:?}",
        list(&seen, "x-remote-groups")
    );
    assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\dave"));
    assert!(
        gw.log().contains("directory unavailable"),
        "a warning:\n{}",
        gw.log()
    );

    // Back: after the backoff (1 s), names again.
    relay.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let (seen, took) = login(&gw, &dc, AD_DAVE, AD_DAVE_PASSWORD);
        assert!(took < Duration::from_secs(5), "took {took:?}");
        if list(&seen, "x-remote-groups").contains(&sales) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "names did not come back:\n{}",
            gw.log()
        );
    }
    assert!(
        gw.log().contains("the directory answers again"),
        "{}",
        gw.log()
    );
}
