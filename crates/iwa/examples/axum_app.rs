//! An axum app that knows which domain user is calling, with no login form.
//!
//! ```text
//! IWA_KEYTAB=/etc/iwa/http.keytab cargo run -p iwa --example axum_app -- 127.0.0.1:8000
//! curl --negotiate -u : http://localhost:8000/            # who am I (login required)
//! curl http://localhost:8000/maybe                         # anonymous allowed
//! ```
//! The routes under `/maybe` use `Policy::Optional`: anonymous requests pass, a client
//! that offers Negotiate is authenticated, and a handler can still demand a login by
//! extracting `Identity` (its rejection is the 401 challenge).

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use iwa::{Authenticator, Identity, IwaLayer, KerberosSettings, Policy};

async fn whoami(id: Identity) -> String {
    format!(
        "hello {} (principal {}, via {})\n",
        id.remote_user(),
        id.principal,
        id.method
    )
}

async fn maybe(id: Option<Identity>) -> String {
    match id {
        Some(id) => format!("hello {}\n", id.remote_user()),
        None => "hello anonymous\n".to_owned(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let keytab = std::env::var("IWA_KEYTAB").unwrap_or_else(|_| "/etc/iwa/http.keytab".into());
    let auth = Arc::new(Authenticator::kerberos(&KerberosSettings {
        keytab: keytab.into(),
        ..Default::default()
    })?);

    let required = Router::new()
        .route("/", get(whoami))
        .layer(IwaLayer::new(auth.clone()));
    let optional = Router::new()
        .route("/maybe", get(maybe))
        .route("/maybe/login", get(whoami))
        .layer(IwaLayer::new(auth).policy(Policy::Optional));
    let app = required.merge(optional);

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
