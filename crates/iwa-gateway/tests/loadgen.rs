//! The benchmark's load generator, run briefly against the real gateway in each mode
//! the gateway supports, so `bench/run` keeps working. Not a timing test: it checks
//! that every request succeeds, never how fast.
//!
//! One test in this file: it sets KRB5CCNAME/KRB5_CONFIG for the in-process client.

mod support;

use std::time::Duration;

use iwa_loadgen::{Mode, RunConfig};
use support::*;

#[test]
fn loadgen_fresh_once_and_ntlm_against_the_gateway() {
    let realm = realm();
    let echo = echo();
    let cc = alice(&realm);
    for (k, v) in cc.env() {
        // SAFETY of set_var: this test is alone in its process and sets the variables
        // before starting any thread that reads them.
        std::env::set_var(k, v);
    }
    let users = iwa_testrealm::TempDir::new("iwa-loadgen-users").unwrap();
    let users_file = users.path().join("users");
    std::fs::write(
        &users_file,
        format!("{}\n", iwa::ntlm::users_file_line("IWA\\alice", "bench-pw")),
    )
    .unwrap();
    let cfg = GatewayConfig::new(&realm, echo.url()).kerberos_line(&format!(
        "connection_bound = true\n\n[ntlm]\nusers_file = {}\ndomain = \"IWA\"\n",
        toml_str(&users_file.display().to_string())
    ));
    let gw = Gateway::start(&realm, &cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for mode in [Mode::Fresh, Mode::Once, Mode::Ntlm] {
        let mut run = RunConfig::new(gw.url("/bench"), mode);
        run.connections = 2;
        run.warmup = Duration::ZERO;
        run.duration = None;
        run.requests = Some(40);
        run.tokens = Some(80);
        run.user = "alice".into();
        run.password = "bench-pw".into();
        run.domain = "IWA".into();
        let report = rt
            .block_on(iwa_loadgen::run(run))
            .unwrap_or_else(|e| panic!("{mode:?}: {e}\n{}", gw.log()));
        assert!(
            report.ok >= 40,
            "{mode:?}: {}\n{}",
            report.human(),
            gw.log()
        );
        assert_eq!(
            report.errors,
            0,
            "{mode:?}: {}\n{}",
            report.human(),
            gw.log()
        );
    }
    let seen = echo.requests();
    assert!(seen
        .iter()
        .all(|r| r.header("x-remote-user") == Some("alice@IWA.TEST")
            || r.header("x-remote-user") == Some("IWA\\alice")));
}
