//! The tower layer and axum extractors against a real MIT KDC, with curl as the client.

use std::process::Command;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use iwa::{Authenticator, Identity, IwaLayer, KerberosSettings, Policy};
use iwa_testrealm::{MitRealm, ALICE, ALICE_PASSWORD, BOB, BOB_PASSWORD};

async fn whoami(id: Identity, headers: HeaderMap) -> String {
    let spoof = headers
        .get("x-remote-user")
        .map_or("none", |v| v.to_str().unwrap_or("?"))
        .to_owned();
    format!(
        "user={} principal={} method={} spoof={spoof}",
        id.remote_user(),
        id.principal,
        id.method
    )
}

async fn maybe(id: Option<Identity>) -> String {
    id.map_or_else(
        || "anonymous".to_owned(),
        |id| format!("user={}", id.remote_user()),
    )
}

struct App {
    port: u16,
    realm: MitRealm,
}

async fn start(realm_domains: &[(&str, &str)]) -> App {
    let realm = MitRealm::standard().expect("test realm");
    let auth = Arc::new(
        Authenticator::kerberos(&KerberosSettings {
            keytab: realm.http_keytab(),
            realm_domains: realm_domains
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Default::default()
        })
        .expect("acceptor credential from the realm's keytab"),
    );
    let required = Router::new()
        .route("/", get(whoami))
        .layer(IwaLayer::new(auth.clone()));
    let optional = Router::new()
        .route("/maybe", get(maybe))
        .route("/maybe/login", get(whoami))
        .layer(IwaLayer::new(auth).policy(Policy::Optional));
    let app = required.merge(optional);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    App { port, realm }
}

/// Runs curl off the runtime; returns (status, www-authenticate, body).
async fn curl(
    app: &App,
    realm_user: Option<(&str, &str)>,
    path: &str,
    extra: &[&str],
) -> (u16, String, String) {
    let port = app.port;
    let ccache = realm_user.map(|(u, p)| app.realm.kinit(u, p).expect("kinit"));
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-D", "-", "--max-time", "10"]);
    if let Some(cc) = &ccache {
        cc.apply(&mut cmd);
        cmd.args(["--negotiate", "-u", ":"]);
    }
    cmd.args(extra)
        .arg(format!("http://localhost:{port}{path}"));
    let out = tokio::task::spawn_blocking(move || {
        let out = cmd.output().expect("curl runs");
        drop(ccache);
        out
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // With --negotiate curl prints the 401 and the final response; take the last.
    let last = text.rsplit("HTTP/1.1 ").next().unwrap_or("").to_owned();
    let status: u16 = last.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = last.split_once("\r\n\r\n").unwrap_or((&last, ""));
    let www = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
        .unwrap_or_default();
    (status, www, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_route_challenges_then_knows_the_user() {
    let app = start(&[]).await;
    let (status, www, _) = curl(&app, None, "/", &[]).await;
    assert_eq!((status, www.as_str()), (401, "Negotiate"));

    let (status, www, body) = curl(
        &app,
        Some((ALICE, ALICE_PASSWORD)),
        "/",
        &["-H", "X-Remote-User: EVIL\\mallory"],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "user=alice@IWA.TEST principal=alice@IWA.TEST method=Kerberos spoof=none"
    );
    assert!(
        www.starts_with("Negotiate "),
        "mutual auth token expected, got {www:?}"
    );

    let (status, _, body) = curl(&app, Some((BOB, BOB_PASSWORD)), "/", &[]).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("user=bob@IWA.TEST "), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realm_maps_to_netbios_domain() {
    let app = start(&[("IWA.TEST", "IWA")]).await;
    let (status, _, body) = curl(&app, Some((ALICE, ALICE_PASSWORD)), "/", &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("user=IWA\\alice principal=alice@IWA.TEST"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_routes_pass_anonymous_and_challenge_on_demand() {
    let app = start(&[]).await;
    let (status, _, body) = curl(&app, None, "/maybe", &[]).await;
    assert_eq!((status, body.as_str()), (200, "anonymous"));
    // The handler extracts Identity: its rejection is the Negotiate challenge.
    let (status, www, _) = curl(&app, None, "/maybe/login", &[]).await;
    assert_eq!((status, www.as_str()), (401, "Negotiate"));
    let (status, _, body) = curl(&app, Some((ALICE, ALICE_PASSWORD)), "/maybe/login", &[]).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("user=alice@IWA.TEST"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_with_a_challenge() {
    let app = start(&[]).await;
    let (status, www, _) = curl(&app, None, "/", &["-H", "Authorization: Negotiate AAAA"]).await;
    assert_eq!((status, www.as_str()), (401, "Negotiate"));
    let (status, _, _) = curl(&app, None, "/", &["-H", "Authorization: Negotiate %%%"]).await;
    assert_eq!(status, 400);
}
