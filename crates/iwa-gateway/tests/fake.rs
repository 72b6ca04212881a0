//! `[fake]`: offline development identity. Every authenticating request is the fake user
//! with `X-Remote-Auth-Method: Fake`; client headers are still stripped; rules apply;
//! refused on a non-loopback listener unless explicitly allowed.

mod support;

use std::process::Command;

use support::*;

const FAKE: &str = "\n[fake]\nuser = \"EXAMPLE\\\\alice\"\ngroups = [\"EXAMPLE\\\\Developers\", \"S-1-5-21-1-2-3-1200\"]\nsid = \"S-1-5-21-1-2-3-1104\"\n";

#[test]
fn every_request_is_the_fake_user() {
    let realm = realm();
    let echo = echo();
    let cfg = GatewayConfig::new(&realm, echo.url()).kerberos_line(&format!(
        "{FAKE}\n[[route]]\npath = \"/ops\"\nallow_groups = [\"EXAMPLE\\\\Operators\"]\n"
    ));
    let gw = Gateway::start(&realm, &cfg);
    let r = gw
        .get_raw("/", &[("X-Remote-User", "EVIL\\mallory")])
        .unwrap();
    assert_eq!(r.status, 200, "{}", gw.log());
    let seen = r.echo();
    assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\alice"));
    assert_eq!(seen.header("x-remote-auth-method"), Some("Fake"));
    assert_eq!(
        seen.header("x-remote-user-sid"),
        Some("S-1-5-21-1-2-3-1104")
    );
    assert_eq!(seen.header("x-remote-groups"), Some("EXAMPLE\\Developers"));
    assert_eq!(
        seen.header("x-remote-group-sids"),
        Some("S-1-5-21-1-2-3-1200")
    );
    // Rules apply on top of the fake identity.
    assert_eq!(gw.get_raw("/ops", &[]).unwrap().status, 403);
    assert!(
        gw.log().contains("FAKE IDENTITY MODE"),
        "the start-up warning is logged"
    );
}

#[test]
fn refused_on_a_network_listener_unless_dangerously_allowed() {
    let realm = realm();
    let dir = iwa_testrealm::TempDir::new("iwa-fake").unwrap();
    let base = GatewayConfig::new(&realm, "http://127.0.0.1:9").render(1);
    let check = |text: &str| {
        let path = dir.path().join("iwa.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(iwa_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let network = base.replace("listen = \"127.0.0.1:1\"", "listen = \"0.0.0.0:8080\"");
    let (ok, text) = check(&format!("{network}{FAKE}"));
    assert!(!ok, "{text}");
    assert!(
        text.contains("`fake`") && text.contains("loopback"),
        "{text}"
    );
    let (ok, text) = check(&format!(
        "{network}{FAKE}dangerous_allow_fake_on_network = true\n"
    ));
    assert!(ok, "{text}");
    let (ok, text) = check(&format!("{base}{FAKE}"));
    assert!(ok, "{text}");
}

#[test]
fn admin_page_warns_and_impersonation_works_on_top() {
    let realm = realm();
    let echo = echo();
    let dir = iwa_testrealm::TempDir::new("iwa-fake-imp").unwrap();
    let key = keygen(dir.path());
    let directory = dir.path().join("directory.toml");
    std::fs::write(
        &directory,
        "[users]\n\"EXAMPLE\\\\bob\" = \"S-1-5-21-1-2-3-1105\"\n",
    )
    .unwrap();
    let cfg = GatewayConfig::new(&realm, echo.url()).kerberos_line(&format!(
        "{FAKE}\n[impersonation]\nallow_impersonation = [\"EXAMPLE\\\\Developers\"]\nkey_file = {}\n\n[directory]\nfile = {}\n",
        toml_str(&key.display().to_string()),
        toml_str(&directory.display().to_string()),
    ));
    let gw = Gateway::start(&realm, &cfg);
    let page = gw.get_raw("/.iwa/", &[]).unwrap();
    assert_eq!(page.status, 200, "{}", gw.log());
    let text = page.text();
    assert!(text.contains("Fake identity mode"), "{text}");
    assert!(text.contains("EXAMPLE\\alice"));

    let jar = dir.path().join("jar");
    let jar_s = jar.display().to_string();
    let origin = format!("http://localhost:{}", gw.addr().port());
    let mut args = vec!["-c".to_owned(), jar_s.clone()];
    args.extend(json_request_args(
        "POST",
        &origin,
        Some(r#"{"user": "EXAMPLE\\bob", "reason": "dev"}"#),
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = curl(None, &realm, &[gw.url("/.iwa/api/impersonation")], &args)
        .pop()
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let seen = curl(None, &realm, &[gw.url("/x")], &["-b", &jar_s])
        .pop()
        .unwrap()
        .echo();
    assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\bob"));
    assert_eq!(seen.header("x-remote-impersonator"), Some("EXAMPLE\\alice"));
    assert_eq!(seen.header("x-remote-auth-method"), Some("Fake"));
}
