//! The realm works end to end: create, kinit, keytabs, sharing through IWA_TEST_REALM.

use std::process::Command;
use std::time::Instant;

use iwa_testrealm::{
    MitRealm, RealmError, RealmOptions, ALICE, ALICE_PASSWORD, BOB, BOB_PASSWORD, HTTP_SERVICE,
    OTHER_SERVICE,
};

fn klist_k(realm: &MitRealm, keytab: &std::path::Path) -> String {
    let out = Command::new("klist")
        .arg("-k")
        .arg(keytab)
        .envs(realm.env())
        .output()
        .expect("run klist");
    assert!(out.status.success(), "klist -k failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn standard_realm_kinit_and_keytabs() {
    let started = Instant::now();
    let realm = MitRealm::standard().expect("standard realm");
    eprintln!("standard realm ready in {:?}", started.elapsed());
    assert_eq!(realm.realm(), "IWA.TEST");
    assert!(realm.krb5_conf().is_file());

    let cc = realm.kinit(ALICE, ALICE_PASSWORD).expect("kinit alice");
    assert_eq!(cc.principal(), "alice@IWA.TEST");
    let out = Command::new("klist")
        .envs(cc.env())
        .output()
        .expect("klist");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "klist: {out:?}");
    assert!(text.contains("Default principal: alice@IWA.TEST"), "{text}");
    assert!(text.contains("krbtgt/IWA.TEST@IWA.TEST"), "{text}");

    let bob = realm.kinit(BOB, BOB_PASSWORD).expect("kinit bob");
    assert_ne!(bob.path(), cc.path());

    let http = klist_k(&realm, &realm.http_keytab());
    assert!(http.contains("HTTP/localhost@IWA.TEST"), "{http}");
    assert!(!http.contains("HTTP/other.test"), "{http}");
    let other = klist_k(&realm, &realm.other_keytab());
    assert!(other.contains("HTTP/other.test@IWA.TEST"), "{other}");
    assert!(!other.contains("HTTP/localhost"), "{other}");
    let both = klist_k(&realm, &realm.both_keytab());
    assert!(both.contains("HTTP/localhost@IWA.TEST") && both.contains("HTTP/other.test@IWA.TEST"));

    let entries = realm
        .list_keytab(&realm.http_keytab())
        .expect("list keytab");
    assert!(!entries.is_empty());
    assert!(entries
        .iter()
        .all(|e| e.principal == "HTTP/localhost@IWA.TEST"));
    assert!(
        entries.iter().any(|e| e.enctype.starts_with("aes256")),
        "{entries:?}"
    );
}

#[test]
fn wrong_password_is_refused() {
    let realm = MitRealm::standard().expect("standard realm");
    match realm.kinit(ALICE, "not-the-password") {
        Err(RealmError::ToolFailed { stderr, .. }) => {
            assert!(stderr.contains("Password incorrect"), "{stderr}");
        }
        other => panic!("expected kinit failure, got {other:?}"),
    }
    assert!(realm.kinit("nobody", "x").is_err());
}

#[test]
fn service_ticket_for_http_localhost() {
    let realm = MitRealm::standard().expect("standard realm");
    let cc = realm.kinit(ALICE, ALICE_PASSWORD).expect("kinit");
    let out = Command::new("kvno")
        .arg(format!("{HTTP_SERVICE}@IWA.TEST"))
        .arg(format!("{OTHER_SERVICE}@IWA.TEST"))
        .envs(cc.env())
        .output()
        .expect("kvno");
    assert!(out.status.success(), "kvno: {out:?}");
}

#[test]
fn own_realm_with_custom_principals_and_keytab() {
    let started = Instant::now();
    let mut realm =
        MitRealm::create(RealmOptions::default().realm("CUSTOM.TEST")).expect("create realm");
    let created = started.elapsed();
    realm.add_principal("carol", "carol-pw").expect("addprinc");
    realm
        .add_service("HTTP/app.custom.test")
        .expect("add service");
    let kt = realm.path("app.keytab");
    realm
        .export_keytab(&["HTTP/app.custom.test"], &kt)
        .expect("ktadd");
    eprintln!(
        "custom realm created in {created:?}, populated in {:?}",
        started.elapsed()
    );

    let cc = realm.kinit("carol", "carol-pw").expect("kinit carol");
    assert_eq!(cc.principal(), "carol@CUSTOM.TEST");
    let listed = klist_k(&realm, &kt);
    assert!(
        listed.contains("HTTP/app.custom.test@CUSTOM.TEST"),
        "{listed}"
    );
    // Exporting again must not change the key (-norandkey): kvno stays 1.
    realm
        .export_keytab(&["HTTP/app.custom.test"], &realm.path("again.keytab"))
        .expect("ktadd again");
    let entries = realm
        .list_keytab(&realm.path("again.keytab"))
        .expect("list");
    assert!(entries.iter().all(|e| e.kvno == 1), "{entries:?}");

    // Duplicate principal is an error, not a silent success.
    assert!(realm.add_principal("carol", "other").is_err());
    // Words kadmin would split are refused before reaching it.
    assert!(realm.add_principal("eve", "two words").is_err());

    // Stop by PID on drop; the temp dir disappears.
    let pid = realm.kdc_pid();
    let dir = realm.dir().to_path_buf();
    drop(realm);
    assert!(
        !iwa_testrealm::process::pid_alive(pid),
        "KDC {pid} still alive"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
}

#[test]
fn up_attach_down_via_binary() {
    let tmp = iwa_testrealm::TempDir::new("iwa-realm-up").expect("tmp");
    let dir = tmp.path().join("realm");
    let bin = env!("CARGO_BIN_EXE_iwa-realm");
    let out = Command::new(bin)
        .args(["up", "--dir"])
        .arg(&dir)
        .output()
        .expect("iwa-realm up");
    assert!(out.status.success(), "up: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("export IWA_TEST_REALM="), "{stdout}");
    assert!(dir.join("env").is_file() && dir.join("realm.json").is_file());
    let pid: u32 = std::fs::read_to_string(dir.join("kdc.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(iwa_testrealm::process::pid_alive(pid));

    {
        let attached = MitRealm::attach(&dir).expect("attach");
        assert!(attached.is_attached());
        assert!(attached.state().standard);
        let _cc = attached
            .kinit(ALICE, ALICE_PASSWORD)
            .expect("kinit via attached");
    }
    // Dropping an attached realm leaves the KDC running.
    assert!(iwa_testrealm::process::pid_alive(pid));
    // A second `up` on the same dir refuses instead of clobbering.
    let again = Command::new(bin)
        .args(["up", "--dir"])
        .arg(&dir)
        .output()
        .expect("up");
    assert!(!again.status.success());

    let down = Command::new(bin)
        .args(["down", "--dir"])
        .arg(&dir)
        .output()
        .expect("iwa-realm down");
    assert!(down.status.success(), "down: {down:?}");
    assert!(!iwa_testrealm::process::pid_alive(pid), "KDC survived down");
    assert!(MitRealm::attach(&dir).is_err());
}
