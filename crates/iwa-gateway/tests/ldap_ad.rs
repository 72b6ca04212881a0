//! Group names and fallbacks through LDAP against a real Active Directory (Samba AD DC):
//! SIDs from the PAC are named `EXAMPLE\Group` by `<SID=…>` lookups, rules match those
//! names, `tokenGroups` stands in for a missing PAC, LDAP down leaves SIDs only (quickly),
//! and a static directory file names groups with no LDAP at all.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use iwa_testrealm::samba::{
    SambaDc, AD_ADMIN_PASSWORD, AD_ALICE, AD_ALICE_PASSWORD, AD_BASE_DN, AD_BOB, AD_BOB_PASSWORD,
    ALL_STAFF, HELPDESK_STAFF,
};
use iwa_testrealm::EchoRequest;
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
