//! NTLM through the gateway with the local validator: curl --ntlm, pyspnego (raw NTLM,
//! NTLMSSP under Negotiate, NTLM in SPNEGO with mechListMIC), requests-ntlm, Java's
//! HttpURLConnection; and every refusal the NTLM issue names.

mod support;

use std::path::Path;
use std::process::Command;

use iwa_testrealm::EchoRequest;
use serde_json::Value;
use support::*;

const PASSWORD: &str = "Ntlm-Pa55word";

/// A gateway with Kerberos and NTLM (local validator, users alice and bob).
fn ntlm_gateway(realm: &iwa_testrealm::MitRealm, backend: &str) -> Gateway {
    ntlm_gateway_with(realm, backend, "")
}

fn ntlm_gateway_with(realm: &iwa_testrealm::MitRealm, backend: &str, extra: &str) -> Gateway {
    let dir = iwa_testrealm::TempDir::new("iwa-ntlm-users").unwrap();
    let users = dir.path().join("ntlm-users");
    let mut lines = String::new();
    for account in ["IWA\\alice", "IWA\\bob"] {
        let out = Command::new(iwa_bin())
            .args(["hash", "--user", account])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{PASSWORD}\n").as_bytes())?;
                c.wait_with_output()
            })
            .expect("iwa hash");
        assert!(out.status.success());
        lines.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    std::fs::write(&users, lines).unwrap();
    // Keep the users file alive as long as the gateway: leak the dir into the test.
    std::mem::forget(dir);
    let cfg = GatewayConfig::new(realm, backend).kerberos_line(&format!(
        "realm_domains = {{ \"IWA.TEST\" = \"IWA\" }}\n\n[ntlm]\nusers_file = {}\ndomain = \"IWA\"\ndns_domain = \"iwa.test\"\n{extra}",
        toml_str(&users.display().to_string())
    ));
    Gateway::start(realm, &cfg)
}

fn remote_user(v: &Value) -> String {
    v["headers"]
        .as_array()
        .and_then(|h| {
            h.iter()
                .find(|p| p[0] == "x-remote-user")
                .and_then(|p| p[1].as_str())
        })
        .unwrap_or("(none)")
        .to_owned()
}

fn curl_ntlm(gw: &Gateway, user: &str, password: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "10", "--ntlm", "-u"])
        .arg(format!("{user}:{password}"))
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .arg(gw.url("/curl"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn challenge_offers_negotiate_and_ntlm() {
    let realm = realm();
    let echo = echo();
    let gw = ntlm_gateway(&realm, &echo.url());
    let r = gw.get_raw("/", &[]).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header_all("www-authenticate"), vec!["Negotiate", "NTLM"]);
}

#[test]
fn curl_ntlm_with_and_without_domain() {
    let realm = realm();
    let echo = echo();
    let gw = ntlm_gateway(&realm, &echo.url());
    for user in ["IWA\\alice", "alice", "iwa\\ALICE"] {
        let (code, body) = curl_ntlm(&gw, user, PASSWORD);
        assert_eq!(code, 200, "{user}: {body}\n{}", gw.log());
        let seen = EchoRequest::from_json(body.as_bytes()).unwrap();
        assert_eq!(seen.header("x-remote-user"), Some("IWA\\alice"), "{user}");
        assert_eq!(
            seen.header("x-remote-user-principal"),
            Some("alice@IWA.TEST")
        );
        assert_eq!(seen.header("x-remote-auth-method"), Some("NTLM"));
        assert_eq!(seen.header("authorization"), None);
    }
    let (code, body) = curl_ntlm(&gw, "IWA\\bob", PASSWORD);
    assert_eq!(code, 200);
    assert!(body.contains("IWA\\\\bob"), "{body}");
}

#[test]
fn wrong_password_and_unknown_user_are_refused() {
    let realm = realm();
    let echo = echo();
    let gw = ntlm_gateway(&realm, &echo.url());
    assert_eq!(curl_ntlm(&gw, "IWA\\alice", "wrong").0, 401);
    assert_eq!(curl_ntlm(&gw, "IWA\\mallory", PASSWORD).0, 401);
    let log = gw.log();
    assert!(log.contains("NTLMv2 proof does not match"), "{log}");
    assert!(log.contains("unknown user"), "{log}");
    assert!(
        echo.requests().is_empty(),
        "a refused login reached the backend"
    );
}

#[test]
fn pyspnego_every_wrapping_and_the_connection_stays_authenticated() {
    let realm = realm();
    let echo = echo();
    let gw = ntlm_gateway(&realm, &echo.url());
    for mode in ["ntlm", "negotiate-raw", "spnego"] {
        let v = ntlm_pyspnego(
            &gw,
            &[
                "--mode",
                mode,
                "--user",
                "alice",
                "--domain",
                "IWA",
                "--password",
                PASSWORD,
            ],
        );
        assert_eq!(v["leg1"], 401, "{mode}: {v}");
        assert_eq!(v["leg2"], 200, "{mode}: {v}\n{}", gw.log());
        assert_eq!(remote_user(&v), "IWA\\alice", "{mode}");
        // SPNEGO: pyspnego verified our mechListMIC (it raises otherwise).
        assert_eq!(v["complete"], true, "{mode}: {v}");
        assert!(v.get("final_error").is_none(), "{mode}: {v}");
        assert_eq!(
            v["again"], 200,
            "{mode}: later requests on the connection are alice"
        );
    }
    let v = ntlm_pyspnego(
        &gw,
        &[
            "--mode",
            "spnego",
            "--user",
            "alice",
            "--domain",
            "IWA",
            "--password",
            PASSWORD,
        ],
    );
    assert!(
        v["leg1_www"].as_str().unwrap().starts_with("Negotiate oY"),
        "SPNEGO NegTokenResp expected: {v}"
    );
}

#[test]
fn ntlmv1_is_refused() {
    let realm = realm();
    let echo = echo();
    let gw = ntlm_gateway(&realm, &echo.url());
    for level in ["0", "1"] {
        let v = ntlm_pyspnego(
            &gw,
            &[
                "--mode",
                "ntlm",
                "--user",
                "alice",
                "--domain",
                "IWA",
                "--password",
                PASSWORD,
                "--lm-compat",
                level,
            ],
        );
        assert_eq!(v["leg2"], 401, "LM_COMPAT_LEVEL {level}: {v}");
    }
    let log = gw.log();
    assert!(
        log.contains("NTLMv1") || log.contains("NTLM2 session"),
        "{log}"
    );
}

#[test]
fn replayed_or_split_handshakes_are_refused() {
    let realm = realm();
    let echo = echo();
    let gw = ntlm_gateway(&realm, &echo.url());
    let v = ntlm_pyspnego(
        &gw,
        &[
            "--mode",
            "ntlm",
            "--user",
            "alice",
            "--domain",
            "IWA",
            "--password",
            PASSWORD,
            "--replay",
        ],
    );
    assert_eq!(v["leg2"], 200, "{v}");
    assert_eq!(
        v["replay"], 401,
        "AUTHENTICATE replayed on a new connection: {v}"
    );
    let v = ntlm_pyspnego(
        &gw,
        &[
            "--mode",
            "ntlm",
            "--user",
            "alice",
            "--domain",
            "IWA",
            "--password",
            PASSWORD,
            "--split",
        ],
    );
    assert_eq!(v["leg2"], 401, "AUTHENTICATE on another connection: {v}");
    assert!(gw.log().contains("without a CHALLENGE on this connection"));
}

#[test]
fn requests_ntlm_and_java() {
    let realm = realm();
    let echo = echo();
    let gw = ntlm_gateway(&realm, &echo.url());
    let script = format!(
        "import requests, requests_ntlm, json\nr = requests.get('{}', auth=requests_ntlm.HttpNtlmAuth('IWA\\\\alice', '{PASSWORD}'))\nprint(json.dumps({{'status': r.status_code, 'user': dict(r.json()['headers']).get('x-remote-user')}}))",
        gw.url("/rn")
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["user"], "IWA\\alice");

    let classes = iwa_testrealm::TempDir::new("iwa-java").unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/NtlmGet.java");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(&src)
        .output()
        .expect("javac (JDK) is installed by scripts/deps.sh");
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    for (password, want) in [(PASSWORD, 200), ("wrong", 401)] {
        let out = Command::new("java")
            .arg("-cp")
            .arg(classes.path())
            .arg("NtlmGet")
            .args([&gw.url("/java"), "IWA\\alice", password])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v["status"], want, "{v}");
        if want == 200 {
            let seen: EchoRequest = serde_json::from_value(v["body"].clone()).unwrap();
            assert_eq!(seen.header("x-remote-user"), Some("IWA\\alice"));
            assert!(seen.header("user-agent").unwrap_or("").starts_with("Java/"));
        }
    }
}

#[test]
fn target_name_must_be_a_configured_spn() {
    let realm = realm();
    let echo = echo();
    // pyspnego names HTTP/localhost as its MsvAvTargetName.
    let gw = ntlm_gateway_with(
        &realm,
        &echo.url(),
        "target_names = [\"HTTP/other.test\"]\n",
    );
    let v = ntlm_pyspnego(
        &gw,
        &[
            "--mode",
            "ntlm",
            "--user",
            "alice",
            "--domain",
            "IWA",
            "--password",
            PASSWORD,
        ],
    );
    assert_eq!(v["leg2"], 401, "{v}");
    assert!(
        gw.log().contains("not one of ntlm.target_names"),
        "{}",
        gw.log()
    );
    let gw = ntlm_gateway_with(&realm, &echo.url(), "target_names = [\"HTTP/localhost\"]\n");
    let v = ntlm_pyspnego(
        &gw,
        &[
            "--mode",
            "ntlm",
            "--user",
            "alice",
            "--domain",
            "IWA",
            "--password",
            PASSWORD,
        ],
    );
    assert_eq!(v["leg2"], 200, "{v}");
}
