//! The Samba AD DC fixture works end to end: NTLM through winbind, Kerberos with AES-only
//! service keys and a PAC, LDAP with nested groups, LDAPS/StartTLS with a certificate
//! from the test CA, and the service account's client keytab for the DC's LDAP SPN.
//!
//! Every test uses `SambaDc::standard()`, so a whole test run shares one DC (see the
//! `samba` module docs for where it comes from).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use iwa_testrealm::{
    RealmError, SambaDc, AD_ALICE, AD_ALICE_PASSWORD, AD_BOB, AD_BOB_PASSWORD, AD_CAROL,
    AD_CAROL_PASSWORD, AD_DAVE, AD_DAVE_PASSWORD, AD_HTTP_SERVICE, AD_LDAP_SERVICE,
    AD_SERVICE_CLIENT, ALL_STAFF, DC_FQDN, DC_IP, HELPDESK_STAFF, SALES,
};

fn dc() -> SambaDc {
    let started = Instant::now();
    let dc = SambaDc::standard().expect("standard Samba DC");
    eprintln!(
        "Samba DC ready in {:?} (dir {}, attached: {})",
        started.elapsed(),
        dc.dir().display(),
        dc.is_attached()
    );
    dc
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn python() -> String {
    std::env::var("IWA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn ntlm_through_winbind() {
    let dc = dc();
    let ok = dc
        .wbinfo(&["-a", &format!("EXAMPLE\\{AD_ALICE}%{AD_ALICE_PASSWORD}")])
        .expect("wbinfo -a alice");
    assert!(
        ok.contains("challenge/response password authentication succeeded"),
        "{ok}"
    );

    let wrong = dc
        .command("wbinfo")
        .args(["-a", &format!("EXAMPLE\\{AD_ALICE}%not-her-password")])
        .output()
        .expect("wbinfo");
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("NT_STATUS_WRONG_PASSWORD"),
        "{}",
        text(&wrong)
    );

    let disabled = dc
        .command("wbinfo")
        .args(["-a", &format!("EXAMPLE\\{AD_CAROL}%{AD_CAROL_PASSWORD}")])
        .output()
        .expect("wbinfo");
    assert!(!disabled.status.success(), "{}", text(&disabled));
    assert!(
        text(&disabled).contains("NT_STATUS_ACCOUNT_DISABLED"),
        "{}",
        text(&disabled)
    );

    let conf = format!("--configfile={}", dc.smb_conf().display());
    let ntlm_auth = |user: &str, pw: &str| {
        dc.command("ntlm_auth")
            .arg(&conf)
            .arg(format!("--username={user}"))
            .arg("--domain=EXAMPLE")
            .arg(format!("--password={pw}"))
            .output()
            .expect("ntlm_auth")
    };
    let good = ntlm_auth(AD_BOB, AD_BOB_PASSWORD);
    assert!(good.status.success(), "{}", text(&good));
    let bad = ntlm_auth(AD_BOB, AD_ALICE_PASSWORD);
    assert!(!bad.status.success(), "{}", text(&bad));
}

/// One NTLMSSP handshake between `ntlm_auth` as client and as the squid-style server
/// helper (what a proxy would do against winbindd). Returns the server's last answer.
fn squid_ntlmssp(dc: &SambaDc, user: &str, password: &str) -> String {
    let conf = format!("--configfile={}", dc.smb_conf().display());
    let spawn = |args: &[String]| {
        dc.command("ntlm_auth")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ntlm_auth")
    };
    let mut client = spawn(&[
        "--helper-protocol=ntlmssp-client-1".into(),
        format!("--username={user}"),
        "--domain=EXAMPLE".into(),
        format!("--password={password}"),
        conf.clone(),
    ]);
    let mut server = spawn(&["--helper-protocol=squid-2.5-ntlmssp".into(), conf]);
    let mut cin = client.stdin.take().expect("stdin");
    let mut cout = BufReader::new(client.stdout.take().expect("stdout"));
    let mut sin = server.stdin.take().expect("stdin");
    let mut sout = BufReader::new(server.stdout.take().expect("stdout"));
    let talk = |to: &mut dyn Write, from: &mut dyn BufRead, line: &str| -> String {
        writeln!(to, "{line}").expect("write helper");
        to.flush().expect("flush");
        let mut answer = String::new();
        from.read_line(&mut answer).expect("read helper");
        answer.trim().to_owned()
    };
    let token = |answer: &str| answer.split_whitespace().nth(1).unwrap_or("").to_owned();
    let negotiate = talk(&mut cin, &mut cout, "YR");
    assert!(negotiate.starts_with("YR "), "client: {negotiate}");
    let challenge = talk(&mut sin, &mut sout, &format!("YR {}", token(&negotiate)));
    assert!(challenge.starts_with("TT "), "server: {challenge}");
    let authenticate = talk(&mut cin, &mut cout, &format!("TT {}", token(&challenge)));
    assert!(
        authenticate.starts_with("KK ") || authenticate.starts_with("AF "),
        "client: {authenticate}"
    );
    let verdict = talk(&mut sin, &mut sout, &format!("KK {}", token(&authenticate)));
    drop((cin, sin));
    let _ = client.wait();
    let _ = server.wait();
    verdict
}

#[test]
fn ntlmssp_helper_protocol_against_the_dc() {
    let dc = dc();
    assert_eq!(
        squid_ntlmssp(&dc, AD_DAVE, AD_DAVE_PASSWORD),
        "AF EXAMPLE\\dave"
    );
    let refused = squid_ntlmssp(&dc, AD_DAVE, "wrong-password");
    assert!(refused.starts_with("NA "), "{refused}");
}

#[test]
fn ldaps_certificate_verifies_with_the_test_ca() {
    let dc = dc();
    let ca = dc.tls_ca_file().expect("test CA");
    for (port, starttls) in [("636", false), ("389", true)] {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &format!("{DC_IP}:{port}"),
            "-CAfile",
        ])
        .arg(&ca)
        .args(["-verify_return_error", "-verify_hostname", DC_FQDN]);
        if starttls {
            cmd.args(["-starttls", "ldap"]);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("openssl s_client");
        let t = text(&out);
        assert!(
            t.contains("Verify return code: 0 (ok)"),
            "port {port}, starttls {starttls}: {t}"
        );
    }
}

#[test]
fn service_account_gets_a_ticket_for_the_dc_ldap_service_with_its_client_keytab() {
    let dc = dc();
    let keytab = dc.client_keytab().expect("client keytab");
    let dir = iwa_testrealm::TempDir::new("iwa-samba-client-kt").expect("tmp");
    let ccache = format!("FILE:{}", dir.path().join("cc").display());
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        let out = Command::new(program)
            .args(args)
            .env("KRB5_CONFIG", dc.krb5_conf())
            .env("KRB5CCNAME", &ccache)
            .env_remove("KRB5_CLIENT_KTNAME")
            .output()
            .expect(program);
        assert!(out.status.success(), "{program}: {}", text(&out));
        text(&out)
    };
    run(
        "kinit",
        &[
            "-k".as_ref(),
            "-t".as_ref(),
            keytab.as_os_str(),
            AD_SERVICE_CLIENT.as_ref(),
        ],
    );
    let out = run("kvno", &[AD_LDAP_SERVICE.as_ref()]);
    assert!(out.contains("ldap/dc1.example.test@EXAMPLE.TEST"), "{out}");
}

#[test]
fn kerberos_aes_service_ticket_decrypts_with_exported_keytab() {
    let dc = dc();
    let cc = dc.kinit(AD_ALICE, AD_ALICE_PASSWORD).expect("kinit alice");
    assert_eq!(cc.principal(), "alice@EXAMPLE.TEST");

    let kvno = Command::new("kvno")
        .arg(AD_HTTP_SERVICE)
        .envs(cc.env())
        .output()
        .expect("kvno");
    assert!(kvno.status.success(), "{}", text(&kvno));
    let klist = Command::new("klist")
        .arg("-e")
        .envs(cc.env())
        .output()
        .expect("klist");
    let listed = text(&klist);
    let http_line = listed
        .lines()
        .skip_while(|l| !l.contains("HTTP/localhost@EXAMPLE.TEST"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        http_line.contains("aes256-cts-hmac-sha1-96, aes256-cts-hmac-sha1-96")
            || http_line.contains("aes128"),
        "HTTP/localhost ticket should be AES: {listed}"
    );
    assert!(!listed.contains("arcfour"), "{listed}");

    // `kvno -k` decrypts the ticket with the keytab: proves the exported keys are current.
    let check = Command::new("kvno")
        .arg("-k")
        .arg(dc.http_keytab())
        .arg(AD_HTTP_SERVICE)
        .envs(cc.env())
        .output()
        .expect("kvno -k");
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("keytab entry valid"),
        "{}",
        text(&check)
    );

    let entries = dc.list_keytab(&dc.http_keytab()).expect("klist -k");
    assert!(!entries.is_empty());
    assert!(
        entries
            .iter()
            .all(|e| e.principal == "HTTP/localhost@EXAMPLE.TEST" && e.enctype.starts_with("aes")),
        "{entries:?}"
    );

    match dc.kinit(AD_ALICE, "not-her-password") {
        Err(RealmError::ToolFailed { stderr, .. }) => {
            assert!(stderr.contains("Password incorrect"), "{stderr}")
        }
        other => panic!("expected kinit failure, got {other:?}"),
    }
    assert!(
        dc.kinit(AD_CAROL, AD_CAROL_PASSWORD).is_err(),
        "disabled account got a TGT"
    );
}

#[test]
fn gssapi_acceptor_sees_an_authenticated_pac() {
    let dc = dc();
    let cc = dc.kinit(AD_ALICE, AD_ALICE_PASSWORD).expect("kinit alice");
    let script = r#"
import json, gssapi
import gssapi.raw as raw
spn = gssapi.Name("HTTP@localhost", gssapi.NameType.hostbased_service)
init = gssapi.SecurityContext(name=spn, usage="initiate")
acc = gssapi.SecurityContext(usage="accept")
acc.step(init.step())
name = acc.initiator_name
attrs = {}
for a in raw.inquire_name(name, attrs=True).attrs or []:
    v = raw.get_name_attribute(name, a)
    attrs[a.decode()] = {"authenticated": bool(v.authenticated), "len": sum(len(x) for x in v.values)}
print(json.dumps({"complete": acc.complete, "name": str(name), "attrs": attrs}))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .envs(cc.env())
        .env("KRB5_KTNAME", dc.http_keytab())
        .output()
        .expect("python gssapi");
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(v["name"], "alice@EXAMPLE.TEST", "{v}");
    let logon = &v["attrs"]["urn:mspac:logon-info"];
    assert_eq!(logon["authenticated"], true, "{v}");
    assert!(logon["len"].as_u64().unwrap_or(0) > 100, "{v}");
}

#[test]
fn ldap_token_groups_include_nested_groups() {
    let dc = dc();
    let domain = dc.domain_sid().to_owned();
    assert!(domain.starts_with("S-1-5-21-"), "{domain}");
    let helpdesk = dc.group_sid(HELPDESK_STAFF).expect("helpdesk sid");
    let all = dc.group_sid(ALL_STAFF).expect("all staff sid");
    let sales = dc.group_sid(SALES).expect("sales sid");
    for sid in [&helpdesk, &all, &sales] {
        assert!(
            sid.starts_with(&format!("{domain}-")),
            "{sid} not in {domain}"
        );
    }
    assert!(dc.group_sid(AD_ALICE).is_err(), "a user is not a group");

    let alice = dc.token_groups(AD_ALICE).expect("alice tokenGroups");
    assert!(alice.contains(&helpdesk), "{alice:?}");
    assert!(alice.contains(&all), "nested group missing: {alice:?}");
    assert!(!alice.contains(&sales), "{alice:?}");
    assert!(
        alice.contains(&format!("{domain}-513")),
        "Domain Users: {alice:?}"
    );

    let bob = dc.token_groups(AD_BOB).expect("bob tokenGroups");
    assert!(!bob.contains(&helpdesk) && !bob.contains(&all), "{bob:?}");
    let dave = dc.token_groups(AD_DAVE).expect("dave tokenGroups");
    assert!(dave.contains(&sales) && !dave.contains(&all), "{dave:?}");

    // The SID winbind reports is the objectSid LDAP holds; `<SID=...>` resolves it.
    let alice_sid = dc.user_sid(AD_ALICE).expect("alice sid");
    let ldif = dc
        .ldap_search(
            &format!("<SID={alice_sid}>"),
            "base",
            "(objectClass=*)",
            &["sAMAccountName"],
        )
        .expect("search by SID");
    assert!(ldif.contains("sAMAccountName: alice"), "{ldif}");

    // Simple bind with a wrong password is refused (the DC really checks).
    let bad = dc
        .command("ldapsearch")
        .args([
            "-x",
            "-H",
            &dc.ldap_url(),
            "-D",
            &dc.admin_bind_dn(),
            "-w",
            "wrong",
        ])
        .args(["-b", "", "-s", "base"])
        .output()
        .expect("ldapsearch");
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(text(&bad).contains("Invalid credentials"), "{}", text(&bad));
}

/// Full lifecycle of a private DC and of `iwa-realm samba up/down`. Ignored by default:
/// only one DC can run per machine (127.0.0.2, /run/samba/winbindd), and the other tests'
/// shared DC is usually up. Run alone:
/// `cargo nextest run -p iwa-testrealm --run-ignored only samba_lifecycle`.
#[test]
#[ignore = "needs the machine's only DC slot; run alone"]
fn samba_lifecycle() {
    let started = Instant::now();
    let dc = SambaDc::provision(iwa_testrealm::SambaOptions::default()).expect("provision");
    eprintln!(
        "private DC: {:?} {:?}",
        started.elapsed(),
        dc.state().timings
    );
    let procs = dc.processes();
    assert!(procs.len() >= 3, "{procs:?}");
    eprintln!("{} processes, {} KiB PSS", procs.len(), dc.pss_kib());
    // A second DC refuses to start while this one runs.
    assert!(SambaDc::provision(iwa_testrealm::SambaOptions::default()).is_err());
    let dir = dc.dir().to_path_buf();
    let stop = Instant::now();
    drop(dc);
    eprintln!("stopped in {:?}", stop.elapsed());
    for p in procs {
        assert!(!iwa_testrealm::process::pid_alive(p), "pid {p} survived");
    }
    assert!(!dir.exists());
    assert!(!std::path::Path::new("/run/samba/winbindd/pipe").exists());

    let tmp = iwa_testrealm::TempDir::new("iwa-samba-up").expect("tmp");
    let d = tmp.path().join("dc");
    let bin = env!("CARGO_BIN_EXE_iwa-realm");
    let up = Command::new(bin)
        .args(["samba", "up", "--dir"])
        .arg(&d)
        .output()
        .expect("samba up");
    assert!(up.status.success(), "{}", text(&up));
    assert!(String::from_utf8_lossy(&up.stdout).contains("export IWA_TEST_SAMBA="));
    let attached = SambaDc::attach(&d).expect("attach");
    let procs = attached.processes();
    drop(attached);
    assert!(procs.iter().all(|p| iwa_testrealm::process::pid_alive(*p)));
    let down = Command::new(bin)
        .args(["samba", "down", "--dir"])
        .arg(&d)
        .output()
        .expect("samba down");
    assert!(down.status.success(), "{}", text(&down));
    for p in procs {
        assert!(
            !iwa_testrealm::process::pid_alive(p),
            "pid {p} survived down"
        );
    }
    assert!(SambaDc::attach(&d).is_err());
}
