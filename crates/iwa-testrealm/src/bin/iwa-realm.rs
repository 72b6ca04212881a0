//! `iwa-realm`: start/stop a throwaway MIT realm for shell scripts, run the echo backend.
//!
//! ```text
//! iwa-realm up --dir D [--realm R] [--user NAME:PASSWORD ...] [--service SPN ...] [--keytab PATH]
//! iwa-realm down --dir D
//! iwa-realm echo --listen 127.0.0.1:PORT
//! iwa-realm samba up --dir D [--model single|prefork]
//! iwa-realm samba down --dir D
//! ```
//! `up` leaves the KDC running (pid in `D/kdc.pid`), writes `D/realm.json` and `D/env`
//! (shell `export` lines) and prints the export lines on stdout, so
//! `eval "$(iwa-realm up --dir D)"` works. `samba up` does the same for a Samba AD DC
//! on 127.0.0.2 with the standard fixtures (pid in `D/samba.pid`, state `D/samba.json`,
//! prints `export IWA_TEST_SAMBA=D`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use iwa_testrealm::{
    MitRealm, ProcessModel, RealmOptions, SambaDc, SambaOptions, DEFAULT_REALM, HTTP_KEYTAB,
};

#[derive(Parser)]
#[command(
    name = "iwa-realm",
    version,
    about = "Throwaway MIT Kerberos realm and echo backend on loopback"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a realm in DIR and start its KDC; exits leaving the KDC running.
    ///
    /// Without --user/--service it installs the standard fixtures (alice, bob,
    /// HTTP/localhost, HTTP/other.test, http.keytab, other.keytab, both.keytab).
    Up {
        /// Directory for config, database, logs and keytabs (created; must not hold a realm).
        #[arg(long)]
        dir: PathBuf,
        /// Realm name.
        #[arg(long, default_value = DEFAULT_REALM)]
        realm: String,
        /// A user as NAME:PASSWORD (repeatable).
        #[arg(long = "user", value_name = "NAME:PASSWORD")]
        users: Vec<String>,
        /// A service principal with a random key, e.g. HTTP/localhost (repeatable).
        #[arg(long = "service", value_name = "SPN")]
        services: Vec<String>,
        /// Keytab receiving all --service keys (default DIR/http.keytab).
        #[arg(long)]
        keytab: Option<PathBuf>,
    },
    /// Stop the KDC of DIR (by the PID in DIR/kdc.pid).
    Down {
        /// The realm directory given to `up`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Samba AD DC on 127.0.0.2 (EXAMPLE.TEST) with the standard fixtures.
    #[command(subcommand)]
    Samba(SambaCmd),
    /// Run the HTTP echo backend in the foreground until SIGINT/SIGTERM.
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum SambaCmd {
    /// Provision a domain in DIR, start the DC and install the standard fixtures; exits
    /// leaving the DC running. Prints `export IWA_TEST_SAMBA=DIR`.
    Up {
        /// Directory for the DC (created; must not hold a domain).
        #[arg(long)]
        dir: PathBuf,
        /// samba process model.
        #[arg(long, default_value = "single")]
        model: ProcessModel,
    },
    /// Stop the DC of DIR (by the PID in DIR/samba.pid, with its whole process tree).
    Down {
        /// The directory given to `samba up`.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iwa-realm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.cmd {
        Cmd::Up {
            dir,
            realm,
            users,
            services,
            keytab,
        } => {
            let started = std::time::Instant::now();
            let mut r = MitRealm::create(RealmOptions::default().realm(realm).dir(&dir))?;
            if users.is_empty() && services.is_empty() {
                r.install_standard_fixtures()?;
            } else {
                for u in &users {
                    let (name, pw) = u
                        .split_once(':')
                        .ok_or_else(|| format!("--user {u:?}: want NAME:PASSWORD"))?;
                    r.add_principal(name, pw)?;
                }
                for s in &services {
                    r.add_service(s)?;
                }
                if !services.is_empty() {
                    let kt = keytab.unwrap_or_else(|| r.path(HTTP_KEYTAB));
                    let spns: Vec<&str> = services.iter().map(String::as_str).collect();
                    r.export_keytab(&spns, &kt)?;
                }
            }
            r.write_env_file()?;
            r.write_state()?;
            let env = std::fs::read_to_string(r.path(iwa_testrealm::realm::ENV_FILE))?;
            eprintln!(
                "iwa-realm: realm {} up in {:?}: KDC pid {} on {}, dir {}",
                r.realm(),
                started.elapsed(),
                r.kdc_pid(),
                r.kdc_addr(),
                r.dir().display()
            );
            let _ = r.detach();
            print!("{env}");
            Ok(())
        }
        Cmd::Down { dir } => {
            match iwa_testrealm::stop_dir(&dir)? {
                Some(pid) => eprintln!("iwa-realm: stopped KDC pid {pid}"),
                None => eprintln!("iwa-realm: no KDC running for {}", dir.display()),
            }
            Ok(())
        }
        Cmd::Samba(SambaCmd::Up { dir, model }) => {
            let started = std::time::Instant::now();
            let mut dc = SambaDc::provision(SambaOptions::default().dir(&dir).model(model))?;
            dc.install_standard_fixtures()?;
            dc.write_state()?;
            let env_file = dc.write_env_file()?;
            let t = &dc.state().timings;
            eprintln!(
                "iwa-realm: Samba DC {} up in {:?} (provision {:.1}s, start {:.1}s, fixtures {:.1}s): \
                 samba pid {} ({} model, {} MiB PSS) on {}, dir {}",
                dc.realm(),
                started.elapsed(),
                t.provision_secs,
                t.start_secs,
                t.fixtures_secs,
                dc.samba_pid(),
                model.as_arg(),
                dc.pss_kib() / 1024,
                iwa_testrealm::DC_IP,
                dc.dir().display()
            );
            let env = std::fs::read_to_string(env_file)?;
            let _ = dc.detach();
            print!("{env}");
            Ok(())
        }
        Cmd::Samba(SambaCmd::Down { dir }) => {
            let started = std::time::Instant::now();
            match iwa_testrealm::stop_samba_dir(&dir)? {
                Some(pid) => eprintln!(
                    "iwa-realm: stopped samba pid {pid} in {:?}",
                    started.elapsed()
                ),
                None => eprintln!("iwa-realm: no Samba DC running for {}", dir.display()),
            }
            Ok(())
        }
        Cmd::Echo { listen } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind(listen).await?;
                eprintln!(
                    "iwa-realm: echo backend listening on http://{}",
                    l.local_addr()?
                );
                iwa_testrealm::echo::serve(l, shutdown_signal()).await;
                Ok::<(), std::io::Error>(())
            })?;
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
