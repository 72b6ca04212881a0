//! `[metrics] listen`: Prometheus text on a listener of its own, counting what the
//! gateway did: logins by method, session-cookie reuse, refused credentials by code,
//! anonymous routes, status codes, the duration histogram, connections.

mod support;

use support::*;

/// The metrics text from `port`.
fn scrape(port: u16) -> String {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = raw_http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n",
    )
    .expect("scrape");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// The value of one series (`name{labels}` exactly as rendered); 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

#[test]
fn metrics_count_logins_sessions_failures_and_anonymous_requests() {
    let realm = realm();
    let echo = echo();
    let keys = iwa_testrealm::TempDir::new("iwa-metrics-keys").unwrap();
    let key = keygen(keys.path());
    let port = iwa_testrealm::free_tcp_port().unwrap();
    let cfg = GatewayConfig::new(&realm, echo.url()).kerberos_line(&format!(
        "\n[session]\nkey_file = {}\n\n[[route]]\npath = \"/public\"\nauth = \"anonymous\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        toml_str(&key.display().to_string())
    ));
    let gw = Gateway::start(&realm, &cfg);
    let before = scrape(port);
    assert_eq!(value(&before, "iwa_build_info{version=\"0.1.0\"}"), 1.0);
    assert!(value(&before, "iwa_start_time_seconds") > 1.7e9, "{before}");

    // A Kerberos login (curl: 401, then the token): one challenge, one login, 200.
    let cc = alice(&realm);
    let token = mint_token(&cc, "localhost");
    let login = gw.get_with_token("/login", &token);
    assert_eq!(login.status, 200, "{}", gw.log());
    let pair = login
        .header("set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // The cookie twice: the session, no handshake.
    for _ in 0..2 {
        let r = gw.get_raw("/later", &[("Cookie", &pair)]).unwrap();
        assert_eq!(r.status, 200);
    }
    // Nothing: a challenge. Garbage: refused.
    assert_eq!(gw.get_raw("/x", &[]).unwrap().status, 401);
    let r = gw
        .get_raw("/x", &[("Authorization", "Negotiate AAAA")])
        .unwrap();
    assert_eq!(r.status, 401);
    // An anonymous route.
    assert_eq!(gw.get_raw("/public/a", &[]).unwrap().status, 200);

    let after = scrape(port);
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        delta("iwa_auth_total{event=\"login\",method=\"Kerberos\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta("iwa_auth_total{event=\"session\",method=\"Kerberos\"}"),
        2.0
    );
    assert_eq!(delta("iwa_auth_total{event=\"no_credentials\"}"), 1.0);
    assert_eq!(delta("iwa_auth_total{event=\"failed\"}"), 1.0);
    assert_eq!(delta("iwa_auth_total{event=\"anonymous_route\"}"), 1.0);
    let reasons: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("iwa_auth_failures_total{"))
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(delta("iwa_http_requests_total{code=\"200\"}"), 4.0);
    assert_eq!(delta("iwa_http_requests_total{code=\"401\"}"), 2.0);
    // The histogram counts every request, and its buckets only grow.
    let codes: f64 = after
        .lines()
        .filter(|l| l.starts_with("iwa_http_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(
        value(&after, "iwa_http_request_duration_seconds_count"),
        codes
    );
    let buckets: Vec<f64> = after
        .lines()
        .filter(|l| l.starts_with("iwa_http_request_duration_seconds_bucket"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&codes));
    assert!(delta("iwa_connections_total") >= 6.0);
    // Not a directory or hosted-app gateway: those series are absent.
    assert!(!after.contains("iwa_directory_") && !after.contains("iwa_app_"));

    // Only /metrics, only GET/HEAD; the gateway's own port does not serve it.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = raw_http(
        addr,
        b"GET /other HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    let r = raw_http(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(gw.get_raw("/metrics", &[]).unwrap().status, 401);
}

#[test]
fn metrics_listen_must_be_its_own_address() {
    let realm = realm();
    let dir = iwa_testrealm::TempDir::new("iwa-metrics-check").unwrap();
    let cfg = GatewayConfig::new(&realm, "http://127.0.0.1:9")
        .kerberos_line("\n[metrics]\nlisten = \"127.0.0.1:8080\"\n");
    let path = dir.path().join("iwa.toml");
    std::fs::write(&path, cfg.render(8080)).unwrap();
    let out = std::process::Command::new(iwa_bin())
        .args(["check", "--config"])
        .arg(&path)
        .envs(realm.env())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("metrics.listen") && text.contains("the same address as `listen`"),
        "{text}"
    );
}

/// With a directory file and a hosted app, their series appear: cache misses then hits,
/// backend batches, the app's starts and its state.
#[test]
fn metrics_show_the_directory_cache_and_the_hosted_app() {
    let realm = realm();
    let dir = iwa_testrealm::TempDir::new("iwa-metrics-dir").unwrap();
    let file = dir.path().join("directory.toml");
    std::fs::write(
        &file,
        "realm = \"IWA.TEST\"\n[users]\n\"IWA\\\\alice\" = \"S-1-5-21-1-2-3-1104\"\n\
         [groups.\"IWA\\\\Staff\"]\nsid = \"S-1-5-21-1-2-3-2001\"\nmembers = [\"IWA\\\\alice\"]\n",
    )
    .unwrap();
    let app = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/app.py");
    let port = iwa_testrealm::free_tcp_port().unwrap();
    let cfg = GatewayConfig::new(&realm, "http://unused")
        .backend_table(&format!(
            "command = [{}, {}]\nenv = {{ PYTHONDONTWRITEBYTECODE = \"1\" }}\n",
            toml_str(&python()),
            toml_str(&app.display().to_string())
        ))
        .kerberos_line(&format!(
            "realm_domains = {{ \"IWA.TEST\" = \"IWA\" }}\n\n[directory]\nfile = {}\n\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            toml_str(&file.display().to_string())
        ));
    let gw = Gateway::start(&realm, &cfg);
    let ready = iwa_testrealm::util::wait_until(std::time::Duration::from_secs(20), || {
        value(&scrape(port), "iwa_app_state{state=\"ready\"}") == 1.0
    });
    assert!(ready, "{}\n{}", scrape(port), gw.log());
    let text = scrape(port);
    assert_eq!(value(&text, "iwa_app_starts_total"), 1.0, "{text}");
    assert_eq!(value(&text, "iwa_app_failures_total"), 0.0);
    assert_eq!(value(&text, "iwa_app_state{state=\"starting\"}"), 0.0);

    let cc = alice(&realm);
    for _ in 0..2 {
        let r = curl_get(&cc, &realm, &gw.url("/whoami"), &[]);
        assert_eq!(r.status, 200, "{}", gw.log());
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let text = scrape(port);
    assert!(
        value(&text, "iwa_directory_cache_total{result=\"miss\"}") >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "iwa_directory_cache_total{result=\"hit\"}") >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "iwa_directory_backend_calls_total") >= 1.0,
        "{text}"
    );
    assert_eq!(value(&text, "iwa_directory_backend_failures_total"), 0.0);
}
