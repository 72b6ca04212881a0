//! Real Kerberos on loopback for iwa's integration tests, `iwa demo` and benchmarks.
//!
//! * [`MitRealm`]: a throwaway MIT Kerberos realm (config, database, a `krb5kdc` child on
//!   a free 127.0.0.1 port), with principals, keytabs and `kinit` into per-call ccaches.
//!   Everything is selected through environment variables pointing into the realm's
//!   directory; no global file is read or written. [`MitRealm::standard`] gives the
//!   fixtures the tests use (users [`ALICE`] and [`BOB`], services [`HTTP_SERVICE`] and
//!   [`OTHER_SERVICE`] with keytabs).
//! * Sharing: `iwa-realm up --dir D` starts a realm that outlives the command and writes
//!   `D/realm.json`; with `IWA_TEST_REALM=D` set, [`MitRealm::standard`] attaches to it
//!   instead of creating one (each nextest test runs in its own process, so this saves
//!   one realm per test). Without the variable each caller creates its own (~0.2 s).
//! * [`EchoBackend`]: an HTTP/1.1 server that answers with JSON describing the request
//!   it received (method, path, headers in order), to check what a proxy forwards.
//! * [`process`]: stop processes by PID (SIGTERM, then SIGKILL after a bound).
//! * [`SambaDc`]: a real Active Directory domain controller (Samba AD DC on 127.0.0.2)
//!   for PAC groups, LDAP and NTLM through winbind; [`SambaDc::standard`] shares one DC
//!   across test processes (`IWA_TEST_SAMBA`, or one per run next to `IWA_TEST_REALM`),
//!   `iwa-realm samba up/down` drives it from scripts. Needs the Samba packages.
//!
//! Needs the MIT tools (`krb5kdc`, `kdb5_util`, `kadmin.local`, `kinit`, `klist`):
//! Debian packages `krb5-kdc krb5-admin-server krb5-user` (`scripts/deps.sh`).

#![warn(missing_docs)]

pub mod echo;
pub mod error;
pub mod process;
pub mod realm;
pub mod samba;
pub mod util;

pub use echo::{EchoBackend, EchoRequest};
pub use error::{RealmError, Result};
pub use process::ChildGuard;
pub use realm::{
    stop_dir, Ccache, KeytabEntry, MitRealm, RealmOptions, RealmState, ALICE, ALICE_PASSWORD, BOB,
    BOB_PASSWORD, BOTH_KEYTAB, DEFAULT_REALM, HTTP_KEYTAB, HTTP_SERVICE, OTHER_KEYTAB,
    OTHER_SERVICE, REALM_ENV,
};
pub use samba::{
    stop_samba_dir, DcCcache, ProcessModel, SambaDc, SambaOptions, SambaState, AD_ADMIN,
    AD_ADMIN_PASSWORD, AD_ALICE, AD_ALICE_PASSWORD, AD_BASE_DN, AD_BOB, AD_BOB_PASSWORD, AD_CAROL,
    AD_CAROL_PASSWORD, AD_CLIENT_KEYTAB, AD_DAVE, AD_DAVE_PASSWORD, AD_DNS_DOMAIN, AD_DOMAIN,
    AD_HTTP_KEYTAB, AD_HTTP_SERVICE, AD_LDAP_SERVICE, AD_REALM, AD_SERVICE_ACCOUNT,
    AD_SERVICE_CLIENT, ALL_STAFF, DC_FQDN, DC_IP, HELPDESK_STAFF, SALES, SAMBA_ENV,
    WINBINDD_SOCKET_DIR,
};
pub use util::{free_tcp_port, TempDir};
