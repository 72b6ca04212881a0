//! Impersonation through `iwa serve` on the MIT realm, with targets resolved from a
//! static directory file: the JSON API and the page's forms, every refusal, the cookie's
//! binding, revocation and time windows, CSRF checks, authorization on the effective
//! identity, and the audit log. (The Samba AD version is `impersonation_ad.rs`; the
//! browser version is in `browser.rs`.)

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The directory: alice (real, may impersonate: Helpdesk) and bob (real, nobody) have
/// Kerberos principals; the others exist only as impersonation targets.
const DIRECTORY: &str = r#"
realm = "IWA.TEST"
disabled = ["IWA\\carol"]

[users]
"IWA\\alice" = "S-1-5-21-7-7-7-1001"
"IWA\\bob" = "S-1-5-21-7-7-7-1002"
"IWA\\carol" = "S-1-5-21-7-7-7-1003"
"IWA\\dave" = "S-1-5-21-7-7-7-1004"
"IWA\\root" = "S-1-5-21-7-7-7-1005"
"IWA\\helper" = "S-1-5-21-7-7-7-1006"
"IWA\\ceo" = "S-1-5-21-7-7-7-1007"

[groups."IWA\\Helpdesk"]
sid = "S-1-5-21-7-7-7-1100"
members = ["IWA\\alice", "IWA\\helper"]

[groups."IWA\\Finance"]
sid = "S-1-5-21-7-7-7-1101"
members = ["IWA\\alice", "IWA\\bob"]

[groups."IWA\\Payroll"]
sid = "S-1-5-21-7-7-7-1102"
members = ["IWA\\dave"]

[groups."IWA\\Domain Admins"]
sid = "S-1-5-21-7-7-7-512"
members = ["IWA\\root"]
"#;

const ASSERTION_SECRET: &[u8] = b"a-shared-secret-of-at-least-32-bytes!!";

struct Setup {
    gw: Gateway,
    echo: EchoBackend,
    realm: MitRealm,
    dir: TempDir,
}

impl Setup {
    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// Audit events as JSON values (the `fields` of each line).
    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("audit lines are JSON"))
            .map(|v| v["fields"].clone())
            .collect()
    }

    fn audit_has(&self, event: &str, pred: impl Fn(&Value) -> bool) -> bool {
        self.audit().iter().any(|e| e["event"] == event && pred(e))
    }

    fn origin(&self) -> String {
        format!("http://localhost:{}", self.gw.addr().port())
    }
}

fn setup(extra_impersonation: &str) -> Setup {
    let realm = realm();
    let echo = echo();
    let dir = TempDir::new("iwa-imp").unwrap();
    let key = keygen(dir.path());
    let directory = dir.path().join("directory.toml");
    std::fs::write(&directory, DIRECTORY).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let secret = dir.path().join("assertion.key");
    std::fs::write(&secret, ASSERTION_SECRET).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = GatewayConfig::new(&realm, echo.url()).kerberos_line(&format!(
        "realm_domains = {{ \"IWA.TEST\" = \"IWA\" }}\n\n\
         [impersonation]\nallow_impersonation = [\"IWA\\\\Helpdesk\"]\nnever_impersonate = [\"IWA\\\\ceo\"]\n\
         key_file = {}\n{extra_impersonation}\n\
         [directory]\nfile = {}\n\n\
         [log]\naudit_file = {}\n\n\
         [assertion]\nsecret_file = {}\naudience = \"app\"\n\n\
         [[route]]\npath = \"/finance\"\nallow_groups = [\"IWA\\\\Finance\"]\n\n\
         [[route]]\npath = \"/payroll\"\nallow_groups = [\"IWA\\\\Payroll\"]\n\n\
         [[route]]\npath = \"/pub\"\nauth = \"anonymous\"\n",
        toml_str(&key.display().to_string()),
        toml_str(&directory.display().to_string()),
        toml_str(&audit.display().to_string()),
        toml_str(&secret.display().to_string()),
    ));
    let gw = Gateway::start(&realm, &cfg);
    Setup {
        gw,
        echo,
        realm,
        dir,
    }
}

/// A browser-like client: a Kerberos login and a cookie jar.
struct Client<'a> {
    s: &'a Setup,
    cc: Ccache,
    jar: PathBuf,
}

impl<'a> Client<'a> {
    fn new(s: &'a Setup, cc: Ccache, name: &str) -> Self {
        let jar = s.dir.path().join(format!("{name}.jar"));
        Client { s, cc, jar }
    }

    fn request(&self, path: &str, extra: &[&str]) -> CurlResult {
        let jar = self.jar.display().to_string();
        let mut args = vec!["-b", jar.as_str(), "-c", jar.as_str()];
        args.extend_from_slice(extra);
        curl_get(&self.cc, &self.s.realm, &self.s.gw.url(path), &args)
    }

    fn get(&self, path: &str) -> CurlResult {
        self.request(path, &[])
    }

    /// `POST /.iwa/api/impersonation` the way a same-origin `fetch` sends it.
    fn start(&self, user: &str, reason: &str) -> CurlResult {
        let body = serde_json::json!({ "user": user, "reason": reason }).to_string();
        self.api("POST", Some(&body))
    }

    fn stop(&self) -> CurlResult {
        self.api("DELETE", None)
    }

    /// `/.iwa/api/impersonation` the way a same-origin `fetch` calls it.
    fn api(&self, method: &str, body: Option<&str>) -> CurlResult {
        let args = json_request_args(method, &self.s.origin(), body);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.request("/.iwa/api/impersonation", &args)
    }

    fn whoami(&self) -> Value {
        let r = self.get("/.iwa/api/whoami");
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    fn jar_text(&self) -> String {
        std::fs::read_to_string(&self.jar).unwrap_or_default()
    }
}

fn error_code(r: &CurlResult) -> String {
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)));
    v["code"].as_str().unwrap_or("").to_owned()
}

#[test]
fn start_act_and_stop_with_audit() {
    let s = setup("");
    let alice = Client::new(&s, alice(&s.realm), "alice");

    let r = alice.start("IWA\\bob", "ticket 123");
    assert_eq!(r.status, 204, "{}\n{}", r.text(), s.gw.log());
    let set_cookie = r.header("set-cookie").expect("a cookie");
    for attr in ["iwa_impersonation=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie} lacks {attr}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP listener");

    // The backend sees bob, with alice as the impersonator, and never the cookie.
    let seen = alice.get("/app/page").echo();
    assert_eq!(seen.header("x-remote-user"), Some("IWA\\bob"));
    assert_eq!(
        seen.header("x-remote-user-sid"),
        Some("S-1-5-21-7-7-7-1002")
    );
    assert_eq!(seen.header("x-remote-impersonator"), Some("IWA\\alice"));
    assert_eq!(seen.header("x-remote-groups"), Some("IWA\\Finance"));
    assert!(
        !seen
            .header("cookie")
            .unwrap_or("")
            .contains("iwa_impersonation"),
        "the ticket must not reach the backend: {:?}",
        seen.header("cookie")
    );

    // The signed assertion says the same: subject bob, actor alice.
    let key = iwa::assertion::VerifyingKey::hs256(ASSERTION_SECRET).unwrap();
    let claims = iwa::assertion::verify(
        std::slice::from_ref(&key),
        seen.header("x-iwa-assertion").expect("an assertion"),
        "app",
        "GET",
        "/app/page",
        std::time::SystemTime::now(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(claims.sub, "IWA\\bob");
    assert_eq!(claims.act.as_deref(), Some("IWA\\alice"));

    // On an anonymous route nobody is impersonated, and the ticket does not leak.
    let seen = alice.get("/pub/x").echo();
    assert_eq!(seen.header("x-remote-user"), None);
    assert!(
        !seen
            .header("cookie")
            .unwrap_or("")
            .contains("iwa_impersonation"),
        "{:?}",
        seen.header("cookie")
    );

    let me = alice.whoami();
    assert_eq!(me["user"], "IWA\\alice");
    assert_eq!(me["impersonating"], true);
    assert_eq!(me["effective"]["user"], "bob");
    assert_eq!(me["impersonation"]["target"], "IWA\\bob");
    assert_eq!(me["impersonation"]["reason"], "ticket 123");

    // Stop: cookie cleared, and a copy of the old cookie is dead (revoked server-side).
    let copy = s.dir.path().join("copy.jar");
    std::fs::copy(&alice.jar, &copy).unwrap();
    let r = alice.stop();
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(!alice.jar_text().contains("iwa_impersonation"));
    let seen = alice.get("/after").echo();
    assert_eq!(seen.header("x-remote-user"), Some("IWA\\alice"));
    assert_eq!(seen.header("x-remote-impersonator"), None);

    let thief = Client {
        s: &s,
        cc: support::alice(&s.realm),
        jar: copy,
    };
    let r = thief.get("/replayed");
    let seen = r.echo();
    assert_eq!(seen.header("x-remote-user"), Some("IWA\\alice"));
    assert_eq!(seen.header("x-remote-impersonator"), None);
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "an ignored cookie is cleared"
    );

    // The audit file has each step.
    assert!(
        s.audit_has("impersonation_start", |e| e["actor"] == "IWA\\alice"
            && e["target"] == "IWA\\bob"
            && e["target_sid"] == "S-1-5-21-7-7-7-1002"
            && e["reason"] == "ticket 123")
    );
    assert!(
        s.audit_has("impersonation_request", |e| e["actor"] == "IWA\\alice"
            && e["target"] == "IWA\\bob"
            && e["path"] == "/app/page"
            && e["method"] == "GET"
            && e["status"] == 200)
    );
    assert!(s.audit_has("impersonation_stop", |e| e["target"] == "IWA\\bob"));
    assert!(s.audit_has("impersonation_ignored", |e| e["code"] == "revoked"));
    let ids: Vec<String> = s
        .audit()
        .iter()
        .filter(|e| e["event"] == "impersonation_start" || e["event"] == "impersonation_stop")
        .map(|e| e["ticket"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "start and stop name the same ticket");
    assert!(
        !std::fs::read_to_string(s.audit_path())
            .unwrap()
            .contains("iwa_impersonation="),
        "the ticket itself is never logged"
    );
    assert!(
        s.echo
            .requests()
            .iter()
            .all(|q| !q.path.starts_with("/.iwa")),
        "the gateway's API never reaches the backend"
    );
}

#[test]
fn every_refusal_has_its_status_and_code() {
    let s = setup("");
    let alice = Client::new(&s, alice(&s.realm), "alice");
    let bob = Client::new(&s, bob(&s.realm), "bob");
    let cases: [(&Client, &str, &str, u16, &str); 9] = [
        (&bob, "IWA\\dave", "t", 403, "not_permitted"),
        (&alice, "IWA\\alice", "t", 403, "self"),
        (&alice, "alice@IWA.TEST", "t", 403, "self"),
        (&alice, "IWA\\nobody", "t", 404, "unknown_user"),
        (&alice, "IWA\\carol", "t", 409, "target_disabled"),
        (&alice, "IWA\\dave", "t", 403, "escalation"),
        (&alice, "IWA\\root", "t", 403, "protected_target"),
        (&alice, "IWA\\helper", "t", 403, "protected_target"),
        (&alice, "IWA\\ceo", "t", 403, "protected_target"),
    ];
    for (client, user, reason, status, code) in cases {
        let r = client.start(user, reason);
        assert_eq!(r.status, status, "{user}: {}", r.text());
        assert_eq!(error_code(&r), code, "{user}");
        assert!(r.header("set-cookie").is_none());
    }
    let r = alice.start("IWA\\bob", "  ");
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (400, "reason_required")
    );

    // Nested: while acting as bob, alice cannot start another.
    assert_eq!(alice.start("IWA\\bob", "t").status, 204);
    let r = alice.start("IWA\\bob", "again");
    assert_eq!((r.status, error_code(&r).as_str()), (403, "nested"));

    // Malformed JSON and unknown fields.
    for body in [
        "{",
        "{\"user\": 5}",
        "{\"user\": \"IWA\\\\bob\", \"admin\": true}",
    ] {
        let r = bob.api("POST", Some(body));
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (400, "bad_request"),
            "{body}"
        );
    }
    assert!(
        s.audit_has("impersonation_refused", |e| e["code"] == "escalation"
            && e["actor"] == "IWA\\alice"
            && e["target"] == "IWA\\dave")
    );
}

#[test]
fn csrf_checks_on_state_changes() {
    let s = setup("");
    let alice = Client::new(&s, alice(&s.realm), "alice");
    let body = r#"{"user": "IWA\\bob", "reason": "t"}"#;
    let post = |headers: &[&str]| {
        let mut args = vec!["-X", "POST", "--data-binary", body];
        for h in headers {
            args.push("-H");
            args.push(h);
        }
        alice.request("/.iwa/api/impersonation", &args)
    };
    let r = post(&["Content-Type: application/json"]);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (403, "cross_origin"),
        "no Origin"
    );
    let r = post(&["Content-Type: application/json", "Origin: http://evil.test"]);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (403, "cross_origin"),
        "foreign Origin"
    );
    let r = post(&[
        "Content-Type: application/json",
        &format!("Origin: {}", s.origin()),
        "Sec-Fetch-Site: cross-site",
    ]);
    assert_eq!(r.status, 403, "cross-site fetch metadata");
    let origin = format!("Origin: {}", s.origin());
    let r = post(&["Content-Type: text/plain", &origin]);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (415, "unsupported_media_type")
    );
    let r = post(&[
        "Content-Type: application/json",
        "Sec-Fetch-Site: same-origin",
    ]);
    assert_eq!(r.status, 204, "same-origin fetch metadata alone is enough");
    assert!(s.audit_has("csrf_refused", |e| e["actor"] == "IWA\\alice"));

    // DELETE is guarded the same way: without Origin the impersonation keeps running.
    let r = alice.request(
        "/.iwa/api/impersonation",
        &["-X", "DELETE", "-H", "Content-Type: application/json"],
    );
    assert_eq!(r.status, 403);
    assert_eq!(alice.whoami()["impersonating"], true);

    // The page's forms: a cross-site form post is refused, a same-origin one works.
    assert_eq!(alice.stop().status, 204);
    let form = |origin: &str| {
        alice.request(
            "/.iwa/impersonate",
            &[
                "-H",
                origin,
                "--data-urlencode",
                "user=IWA\\bob",
                "--data-urlencode",
                "reason=form",
            ],
        )
    };
    assert_eq!(form("Origin: http://evil.test").status, 403);
    assert_eq!(alice.whoami()["impersonating"], false);
    let r = form(&origin);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/.iwa/"));
    assert_eq!(alice.whoami()["impersonating"], true);
    let r = alice.request("/.iwa/stop", &["-X", "POST", "-H", &origin]);
    assert_eq!(r.status, 303);
    assert_eq!(alice.whoami()["impersonating"], false);
}

#[test]
fn cookie_is_bound_to_its_user_and_tamper_proof() {
    let s = setup("");
    let alice = Client::new(&s, alice(&s.realm), "alice");
    assert_eq!(alice.start("IWA\\bob", "t").status, 204);

    // bob presents alice's cookie: ignored, he stays bob.
    let bob = Client::new(&s, bob(&s.realm), "bob");
    std::fs::copy(&alice.jar, &bob.jar).unwrap();
    let seen = bob.get("/stolen").echo();
    assert_eq!(seen.header("x-remote-user"), Some("IWA\\bob"));
    assert_eq!(seen.header("x-remote-impersonator"), None);
    assert!(
        s.audit_has("impersonation_ignored", |e| e["code"] == "other_user"
            && e["actor"] == "IWA\\bob")
    );

    // A tampered cookie is ignored.
    let jar = alice.jar_text();
    let tampered: String = jar
        .lines()
        .map(|l| {
            if l.contains("iwa_impersonation") {
                let (head, value) = l.rsplit_once('\t').unwrap();
                let mut v: Vec<u8> = value.bytes().collect();
                let i = v.len() / 2;
                v[i] = if v[i] == b'A' { b'B' } else { b'A' };
                format!("{head}\t{}", String::from_utf8(v).unwrap())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mallory = Client::new(&s, support::alice(&s.realm), "tampered");
    std::fs::write(&mallory.jar, tampered + "\n").unwrap();
    let seen = mallory.get("/tampered").echo();
    assert_eq!(seen.header("x-remote-user"), Some("IWA\\alice"));
    assert_eq!(seen.header("x-remote-impersonator"), None);
    assert!(s.audit_has("impersonation_ignored", |e| e["code"] == "invalid_ticket"));

    // alice's own cookie still works.
    assert_eq!(
        alice.get("/mine").echo().header("x-remote-user"),
        Some("IWA\\bob")
    );
}

#[test]
fn rules_apply_to_the_effective_identity() {
    let s = setup("");
    let alice = Client::new(&s, alice(&s.realm), "alice");
    // alice is in Finance herself; bob too.
    assert_eq!(alice.get("/finance/q3").status, 200);
    assert_eq!(alice.start("IWA\\bob", "t").status, 204);
    assert_eq!(alice.get("/finance/q3").status, 200);
    // Neither is in Payroll: as bob, alice is refused there, and the refusal is audited
    // as a request made while impersonating.
    let r = alice.get("/payroll/");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("IWA\\bob"), "{}", r.text());
    assert!(
        s.audit_has("impersonation_request", |e| e["path"] == "/payroll/"
            && e["status"] == 403)
    );
}

#[test]
fn idle_and_absolute_windows_end_it() {
    // Tickets count whole seconds: a 2 s idle window (renewed once 1 s has passed) and a
    // 6 s cap. A cookie used every ~1.1 s stays alive; one left alone for over 3 s is
    // dead whatever the sub-second phase.
    let s = setup("idle_timeout = \"2s\"\nmax_lifetime = \"6s\"\n");
    let alice = Client::new(&s, alice(&s.realm), "alice");
    assert_eq!(alice.start("IWA\\bob", "t").status, 204);
    let copy = s.dir.path().join("idle.jar");
    std::fs::copy(&alice.jar, &copy).unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            alice.get("/").echo().header("x-remote-user"),
            Some("IWA\\bob")
        );
    }
    let idle = Client {
        s: &s,
        cc: support::alice(&s.realm),
        jar: copy,
    };
    assert_eq!(
        idle.get("/").echo().header("x-remote-user"),
        Some("IWA\\alice")
    );
    assert!(s.audit_has("impersonation_ignored", |e| e["code"] == "expired_idle"));
    // Renewals never pass the absolute cap.
    let mut ended = false;
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(900));
        if alice.get("/").echo().header("x-remote-user") == Some("IWA\\alice") {
            ended = true;
            break;
        }
    }
    assert!(ended, "the impersonation outlived its 6 s cap");
    assert!(s.audit_has("impersonation_ignored", |e| e["code"] == "expired_absolute"));
}

#[test]
fn admin_page_shows_form_banner_and_stop() {
    let s = setup("");
    let alice = Client::new(&s, alice(&s.realm), "alice");
    let r = alice.get("/.iwa/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let page = r.text();
    assert!(page.contains("IWA\\alice"), "{page}");
    assert!(page.contains("IWA\\Helpdesk"));
    assert!(page.contains("action=\"/.iwa/impersonate\""));
    assert!(page.contains("<label for=\"user\">"));
    assert!(!page.contains("<script"), "no script needed");

    let bob = Client::new(&s, bob(&s.realm), "bob");
    let page = bob.get("/.iwa/").text();
    assert!(page.contains("IWA\\bob"));
    assert!(
        !page.contains("action=\"/.iwa/impersonate\""),
        "bob may not impersonate"
    );

    assert_eq!(alice.start("IWA\\bob", "ticket 9").status, 204);
    let page = alice.get("/.iwa/").text();
    assert!(page.contains("You are acting as IWA\\bob"), "{page}");
    assert!(page.contains("ticket 9"));
    assert!(page.contains("action=\"/.iwa/stop\""));
    assert!(
        !page.contains("action=\"/.iwa/impersonate\""),
        "no nesting offered"
    );

    // A refused form post shows the reason on the page.
    assert_eq!(alice.stop().status, 204);
    let origin = format!("Origin: {}", s.origin());
    let r = alice.request(
        "/.iwa/impersonate",
        &[
            "-H",
            &origin,
            "--data-urlencode",
            "user=IWA\\root",
            "--data-urlencode",
            "reason=x",
        ],
    );
    assert_eq!(r.status, 403);
    assert!(r.text().contains("privileged group"), "{}", r.text());
    // Anonymous visitors get the challenge, never the page.
    let r = s.gw.get_raw("/.iwa/", &[]).unwrap();
    assert_eq!(r.status, 401);

    // `iwa check` reports it.
    let out = std::process::Command::new(iwa_bin())
        .args(["check", "--config"])
        .arg(s.gw.config_path())
        .envs(s.realm.env())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report
            .contains("impersonation: granted to [\"IWA\\\\Helpdesk\"], cookie iwa_impersonation"),
        "{report}"
    );
}

#[test]
fn config_refuses_impersonation_without_key_or_directory() {
    let realm = realm();
    let dir = TempDir::new("iwa-imp-cfg").unwrap();
    let base = GatewayConfig::new(&realm, "http://127.0.0.1:9").render(1);
    let check = |extra: &str| {
        let path = dir.path().join("iwa.toml");
        std::fs::write(&path, format!("{base}\n{extra}")).unwrap();
        let out = std::process::Command::new(iwa_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, report) = check("[impersonation]\nallow_impersonation = [\"IWA\\\\Helpdesk\"]\n");
    assert!(!ok);
    assert!(report.contains("impersonation.key_file"), "{report}");
    let key = keygen(dir.path());
    let (ok, report) = check(&format!(
        "[impersonation]\nallow_impersonation = [\"IWA\\\\Helpdesk\"]\nkey_file = {}\n",
        toml_str(&key.display().to_string())
    ));
    assert!(!ok);
    assert!(report.contains("none is configured"), "{report}");
}
