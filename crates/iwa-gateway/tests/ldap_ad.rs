//! Group names and fallbacks through LDAP against a real Active Directory (Samba AD DC):
//! SIDs from the PAC are named `EXAMPLE\Group` by `<SID=…>` lookups, rules match those
//! names, `tokenGroups` stands in for a missing PAC, LDAP down leaves SIDs only (quickly),
//! and a static directory file names groups with no LDAP at all. `resolve_user` (the
//! target of impersonation) finds users by name with their SIDs, groups and state.
//! TLS (`ldaps://`, StartTLS) is checked against the DC itself (its certificate from
//! the fixture's test CA) and, for wrong CAs and names, through a relay with a test CA;
//! the relay is also how LDAP is stopped mid-test and brought back, and how a test sees
//! what crosses the wire. SASL GSSAPI binds use the fixture's service account (`websvc`,
//! client keytab) and the DC's SPN `ldap/dc1.example.test`.

mod ldap_relay;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use iwa::directory::{Directory, DirectorySettings, LdapBackend, LdapSettings};
use iwa_testrealm::samba::{
    SambaDc, AD_ADMIN_PASSWORD, AD_ALICE, AD_ALICE_PASSWORD, AD_BASE_DN, AD_BOB, AD_BOB_PASSWORD,
    AD_CAROL, AD_DAVE, AD_DAVE_PASSWORD, AD_SERVICE_CLIENT, ALL_STAFF, DC_FQDN, DC_IP,
    HELPDESK_STAFF, SALES,
};
use iwa_testrealm::EchoRequest;
use ldap_relay::{Mode, Relay, Shape, TestPki};
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

/// `iwa check` on the gateway's config, with the DC's krb5.conf: (passed, output).
fn iwa_check(gw: &Gateway, dc: &SambaDc) -> (bool, String) {
    let out = std::process::Command::new(iwa_bin())
        .args(["check", "--config"])
        .arg(gw.config_path())
        .env("KRB5_CONFIG", dc.krb5_conf())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
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
    // No PAC read: the user's SID comes from the directory, with the groups.
    assert_eq!(
        seen.header("x-remote-user-sid"),
        Some(dc.user_sid(AD_ALICE).unwrap().as_str()),
        "{}",
        gw.log()
    );
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
    // `iwa check` says so, and still passes: the gateway runs without the directory.
    let (passed, text) = iwa_check(&gw, &dc);
    assert!(passed, "{text}");
    assert!(
        text.contains("warning: [ldap]: cannot reach the directory"),
        "{text}"
    );
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

/// tokenGroups stand in for a missing PAC only for the directory's own users: the
/// account `alice` of EXAMPLE.TEST is not the cross-realm `alice@OTHER.TEST`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_groups_only_for_the_directorys_own_realm() {
    let dc = tokio::task::spawn_blocking(|| SambaDc::standard().expect("Samba AD DC"))
        .await
        .unwrap();
    let tmp = TempDir::new();
    let dir = ldap_directory(&dc, tmp.path(), DirectorySettings::default());
    let now = Instant::now();
    let want = sorted(dc.token_groups(AD_ALICE).unwrap());
    let alice_sid = dc.user_sid(AD_ALICE).unwrap();
    for realm in ["EXAMPLE.TEST", "example.test", "EXAMPLE"] {
        let got = dir.token_groups_at(AD_ALICE, realm, now).await.unwrap();
        assert_eq!(sorted(got.groups), want, "{realm}");
        assert_eq!(got.sid.as_deref(), Some(alice_sid.as_str()), "{realm}");
    }
    for realm in ["OTHER.TEST", "EXAMPLE.TEST.EVIL", "TEST"] {
        assert_eq!(
            dir.token_groups_at(AD_ALICE, realm, now).await,
            None,
            "{realm}"
        );
    }
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
fn tls_to_the_dc_with_its_ca_file() {
    // The DC's own LDAPS and StartTLS, with the certificate the fixture's test CA made
    // for it (subjectAltName IP:127.0.0.2): verified, names resolve.
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let ca = dc.tls_ca_file().expect("the DC's test CA");
    let echo = echo();
    let tmp = TempDir::new();
    for (url, tls_line) in [
        (format!("ldaps://{DC_IP}"), ""),
        (format!("ldap://{DC_IP}"), "starttls = true\n"),
    ] {
        let extra = format!(
            "{}{tls_line}ca_file = {}\n",
            ldap_section(&dc, tmp.path(), &url),
            toml_str(&ca.display().to_string())
        );
        let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
        let (seen, _) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
        let names = list(&seen, "x-remote-groups");
        assert!(
            names.contains(&"EXAMPLE\\All Staff".to_owned()),
            "{url} {tls_line}: {names:?}\n{}",
            gw.log()
        );
        assert!(!gw.log().contains("directory unavailable"), "{}", gw.log());
    }
    // Another CA's certificate is refused, by the DC as by the relay.
    let pki = TestPki::new(tmp.path());
    let extra = format!(
        "{}ca_file = {}\n",
        ldap_section(&dc, tmp.path(), &format!("ldaps://{DC_IP}")),
        toml_str(&pki.other_ca.display().to_string())
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    let (seen, _) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
    assert!(
        list(&seen, "x-remote-groups")
            .iter()
            .all(|n| !n.starts_with("EXAMPLE\\")),
        "{}",
        gw.log()
    );
    assert!(
        gw.log().contains("TLS with the directory failed"),
        "{}",
        gw.log()
    );
}

#[test]
fn tls_against_the_dc_itself() {
    // The DC's own LDAPS and StartTLS with no CA file and the escape hatch: the
    // certificate is not checked at all (a DC provisioned before the fixture's test CA
    // serves Samba's autogenerated one, which names no host in subjectAltName and so
    // could not be verified), and the log says so.
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

/// `[ldap]` with a SASL GSSAPI bind as `principal` with the fixture's client keytab
/// (websvc's keys), to the DC's SPN `ldap/dc1.example.test`.
fn gssapi_section(dc: &SambaDc, url: &str, principal: &str, timeout: &str) -> String {
    gssapi_section_for(dc, url, principal, DC_FQDN, timeout)
}

fn gssapi_section_for(
    dc: &SambaDc,
    url: &str,
    principal: &str,
    sasl_host: &str,
    timeout: &str,
) -> String {
    let keytab = dc.client_keytab().expect("the websvc client keytab");
    format!(
        "\n[ldap]\nurl = {}\nbase_dn = {}\nbind = \"gssapi\"\nkeytab = {}\nprincipal = {}\nsasl_host = {}\ndomain = \"EXAMPLE\"\ntimeout = {}\n",
        toml_str(url),
        toml_str(AD_BASE_DN),
        toml_str(&keytab.display().to_string()),
        toml_str(principal),
        toml_str(sasl_host),
        toml_str(timeout),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn gssapi_bind_names_groups_and_seals_plain_ldap() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    // Plain ldap:// through a relay that records both directions.
    let wire = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let relay = Relay::start(dc_ldap(), Mode::Record(wire.clone()));
    let url = format!("ldap://127.0.0.1:{}", relay.port());
    let extra = format!(
        "{}\n[[route]]\npath = \"/staff\"\nallow_groups = [\"EXAMPLE\\\\All Staff\"]\n",
        gssapi_section(&dc, &url, AD_SERVICE_CLIENT, "15s")
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
    // `iwa check` binds the same way (through our SASL layer) and names the domain.
    let (passed, text) = iwa_check(&gw, &dc);
    assert!(
        passed && text.contains("bound; domain EXAMPLE (example.test)"),
        "{text}"
    );
    let (seen, _) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
    let names = list(&seen, "x-remote-groups");
    for g in [HELPDESK_STAFF, ALL_STAFF] {
        let full = format!("EXAMPLE\\{g}");
        assert!(
            names.contains(&full),
            "{full} missing: {names:?}\n{}",
            gw.log()
        );
    }
    let (code, _) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/staff/x"));
    assert_eq!(code, 200, "{}", gw.log());
    let (code, _) = curl_negotiate_ad(&dc, AD_BOB, AD_BOB_PASSWORD, &gw.url("/staff/x"));
    assert_eq!(code, 403, "{}", gw.log());
    assert!(!gw.log().contains("directory unavailable"), "{}", gw.log());
    // The bind was SASL GSSAPI, and everything after it is sealed: neither the
    // attribute asked for nor the group names answered cross the wire in clear.
    let wire = wire.lock().unwrap().clone();
    assert!(
        contains(&wire, b"GSSAPI"),
        "no SASL GSSAPI bind on the wire"
    );
    for clear in [&b"sAMAccountName"[..], b"Helpdesk Staff", b"All Staff"] {
        assert!(
            !contains(&wire, clear),
            "{} in clear on the wire",
            String::from_utf8_lossy(clear)
        );
    }

    // The same lookups with a simple bind do show them: the check above can fail.
    let plain = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let relay = Relay::start(dc_ldap(), Mode::Record(plain.clone()));
    let url = format!("ldap://127.0.0.1:{}", relay.port());
    let gw = ad_gateway(
        &realm,
        &dc,
        &echo.url(),
        &ldap_section(&dc, tmp.path(), &url),
    );
    login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
    let plain = plain.lock().unwrap().clone();
    assert!(contains(&plain, b"sAMAccountName") && contains(&plain, b"Helpdesk Staff"));
}

/// The sealed connection carries several lookups at once (one per group SID). Through
/// a relay that delivers the DC's SASL buffers several at a time, then one that splits
/// them (and their 4-byte lengths) across reads, every answer must still arrive: ldap3's
/// own layer lost the rest of a buffer when the next one came in the same read, and the
/// lookup waiting for it hung until the timeout.
#[test]
fn gssapi_sealed_lookups_survive_coalesced_and_split_reads() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    for shape in [Shape::Coalesce(Duration::from_millis(100)), Shape::Trickle] {
        let relay = Relay::start(dc_ldap(), Mode::Shaped(shape));
        let url = format!("ldap://127.0.0.1:{}", relay.port());
        let gw = ad_gateway(
            &realm,
            &dc,
            &echo.url(),
            &gssapi_section(&dc, &url, AD_SERVICE_CLIENT, "15s"),
        );
        let (seen, took) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
        let names = list(&seen, "x-remote-groups");
        for g in [HELPDESK_STAFF, ALL_STAFF] {
            let full = format!("EXAMPLE\\{g}");
            assert!(
                names.contains(&full),
                "{shape:?}: {full} missing after {took:?}: {names:?}\n{}",
                gw.log()
            );
        }
        let log = gw.log();
        assert!(
            !log.contains("directory unavailable") && !log.contains("SASL security layer"),
            "{shape:?}:\n{log}"
        );
    }
}

#[test]
fn gssapi_bind_over_tls_to_the_dc() {
    // ldaps:// and StartTLS: no SASL layer, the TLS channel binding in the
    // authenticator; the certificate checked with the fixture's CA.
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let ca = dc.tls_ca_file().expect("the DC's test CA");
    let echo = echo();
    for (url, tls_line) in [
        (format!("ldaps://{DC_IP}"), ""),
        (format!("ldap://{DC_IP}"), "starttls = true\n"),
    ] {
        let extra = format!(
            "{}{tls_line}ca_file = {}\n",
            gssapi_section(&dc, &url, AD_SERVICE_CLIENT, "15s"),
            toml_str(&ca.display().to_string())
        );
        let gw = ad_gateway(&realm, &dc, &echo.url(), &extra);
        let (seen, _) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
        let names = list(&seen, "x-remote-groups");
        assert!(
            names.contains(&"EXAMPLE\\All Staff".to_owned()),
            "{url} {tls_line}: {names:?}\n{}",
            gw.log()
        );
        assert!(!gw.log().contains("directory unavailable"), "{}", gw.log());
    }
}

/// A KDC that never answers: a UDP socket nobody reads and a TCP listener nobody
/// accepts on, on the same loopback port (kept open while the value lives).
struct SilentKdc {
    port: u16,
    _udp: std::net::UdpSocket,
    _tcp: std::net::TcpListener,
}

impl SilentKdc {
    fn start() -> SilentKdc {
        for _ in 0..20 {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return SilentKdc {
                    port,
                    _udp: udp,
                    _tcp: tcp,
                };
            }
        }
        panic!("no loopback port free for both UDP and TCP");
    }
}

#[test]
fn gssapi_bind_failures_fall_back_to_sids_within_the_timeout() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let tmp = TempDir::new();
    let silent = SilentKdc::start();
    // The gateway's own Kerberos configuration, with a KDC that never answers (the
    // acceptor needs no KDC; the bind does).
    let silent_conf = tmp.path().join("krb5-silent-kdc.conf");
    std::fs::write(
        &silent_conf,
        format!(
            "[libdefaults]\n    default_realm = EXAMPLE.TEST\n    dns_lookup_kdc = false\n    dns_lookup_realm = false\n    rdns = false\n[realms]\n    EXAMPLE.TEST = {{\n        kdc = 127.0.0.1:{}\n    }}\n",
            silent.port
        ),
    )
    .unwrap();
    let dc_conf = dc.krb5_conf().display().to_string();
    for (what, principal, sasl_host, krb5_conf, expect) in [
        // bob's key is not in websvc's keytab.
        (
            "no key for the principal",
            "bob@EXAMPLE.TEST",
            DC_FQDN,
            dc_conf.clone(),
            "Kerberos for the LDAP bind failed: the keytab",
        ),
        // The KDC knows no ldap/dc2.example.test.
        (
            "no such service principal",
            AD_SERVICE_CLIENT,
            "dc2.example.test",
            dc_conf.clone(),
            "cannot get a ticket for ldap/dc2.example.test@EXAMPLE.TEST",
        ),
        // MIT alone would wait ~27 s for this KDC; the request does not.
        (
            "KDC does not answer",
            AD_SERVICE_CLIENT,
            DC_FQDN,
            silent_conf.display().to_string(),
            "the KDC does not answer",
        ),
    ] {
        let mut cfg = GatewayConfig::new(&realm, echo.url())
            .keytab(dc.http_keytab())
            .kerberos_line(&format!(
                "{}backoff = \"1s\"\nmax_backoff = \"1s\"\n\n[[route]]\npath = \"/staff\"\nallow_groups = [\"EXAMPLE\\\\All Staff\"]\n",
                gssapi_section_for(&dc, &dc.ldap_url(), principal, sasl_host, "2s")
            ));
        cfg.env.push(("KRB5_CONFIG".into(), krb5_conf));
        let gw = Gateway::start(&realm, &cfg);
        // The second login comes after the backoff: the directory is asked again (for
        // the silent KDC, while the first attempt's thread still waits on MIT).
        for round in 0..2 {
            if round == 1 {
                std::thread::sleep(Duration::from_millis(1200));
            }
            let (seen, took) = login(&gw, &dc, AD_ALICE, AD_ALICE_PASSWORD);
            assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
            let sids = list(&seen, "x-remote-group-sids");
            assert!(
                sids.contains(&dc.group_sid(ALL_STAFF).unwrap()),
                "{what}: {sids:?}"
            );
            let names = list(&seen, "x-remote-groups");
            assert!(
                names.iter().all(|n| !n.starts_with("EXAMPLE\\")),
                "{what}: no names without a bind: {names:?}"
            );
        }
        let (code, _) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/staff/x"));
        assert_eq!(code, 403, "{what}");
        let log = gw.log();
        assert!(
            log.contains(expect),
            "{what}: {expect:?} in the log:\n{log}"
        );
        assert!(
            log.contains(principal),
            "{what}: names the principal:\n{log}"
        );
        assert_eq!(
            log.matches("directory unavailable").count(),
            1,
            "{what}: one warning per interval:\n{log}"
        );
    }
}
