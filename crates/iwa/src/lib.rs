//! iwa: Integrated Windows Authentication for Rust web services.
//!
//! - [`Authenticator`]: verifies `Authorization: Negotiate` (Kerberos, through MIT
//!   GSSAPI with a keytab) and yields an [`Identity`].
//! - [`IwaLayer`]: the same as a tower layer; identity goes into request extensions.
//! - With the `axum` feature, `Identity` and `Option<Identity>` are extractors.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use iwa::{Authenticator, Identity, IwaLayer, KerberosSettings};
//!
//! let auth = Authenticator::kerberos(&KerberosSettings {
//!     keytab: "/etc/iwa/http.keytab".into(),
//!     ..Default::default()
//! })?;
//! let app: Router = Router::new()
//!     .route("/", get(|id: Identity| async move { format!("hello {}", id.remote_user()) }))
//!     .layer(IwaLayer::new(Arc::new(auth)));
//! # Ok(()) }
//! ```

pub mod access;
pub mod assertion;
pub mod auth;
pub mod conn;
pub mod directory;
pub mod error;
#[cfg(feature = "axum")]
pub mod extract;
pub mod gss;
pub mod headers;
pub mod identity;
pub mod impersonation;
pub mod keytab;
pub mod layer;
pub mod ntlm;
pub mod replay;
pub mod session;
pub mod ticket;
pub mod winbind;

pub use auth::{Authenticated, Authenticator, KerberosAcceptor, KerberosSettings, Outcome};
pub use error::{AuthError, Challenge, KerberosFailure};
pub use headers::IdentityHeaders;
pub use identity::{AuthMethod, Group, Identity};
pub use layer::{AuthEvent, ConnectionAuth, IwaLayer, IwaService, Policy};
