use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use iwa_gateway::config::{Config, LogFormat};
use iwa_gateway::{check, demo, server};
use tracing::{error, info};

/// iwa: Integrated Windows Authentication (Kerberos SSO) in front of any web app.
#[derive(Parser)]
#[command(name = "iwa", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the authenticating reverse proxy.
    Serve {
        /// The configuration file.
        #[arg(short, long, default_value = "/etc/iwa/iwa.toml")]
        config: PathBuf,
    },
    /// Validate the configuration and the keytab without serving.
    Check {
        #[arg(short, long, default_value = "/etc/iwa/iwa.toml")]
        config: PathBuf,
    },
    /// Print a users-file line for the NTLM local validator. The password is read
    /// from standard input (never from the command line).
    Hash {
        /// The account, as DOMAIN\\user.
        #[arg(short, long)]
        user: String,
    },
    /// Write a new random key file (mode 0600): for session/impersonation tickets or an
    /// HS256 assertion secret; with --ed25519, an Ed25519 key pair for `[assertion]
    /// private_key_file`.
    Keygen {
        /// Where to write it; refuses to overwrite an existing file.
        #[arg(short, long)]
        out: PathBuf,
        /// Write an Ed25519 private key (PKCS#8 PEM, mode 0600) to OUT and its public key
        /// (PEM, mode 0644, for backends) next to it with the extension `.pub`.
        #[arg(long)]
        ed25519: bool,
    },
    /// Show single sign-on working on a throwaway loopback realm (needs the MIT KDC
    /// packages and curl; `scripts/demo` installs them).
    Demo {
        /// Exit after one authenticated request instead of waiting for Ctrl-C.
        #[arg(long)]
        once: bool,
    },
}

/// The log on stderr (text or JSON, filtered by `level` / `IWA_LOG`), plus, with
/// `audit_file`, every `iwa::audit` event as a JSON line in that file (created 0600,
/// appended to).
fn init_logging(
    level: &str,
    format: LogFormat,
    audit_file: Option<&std::path::Path>,
) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{filter::Targets, fmt};

    let filter = tracing_subscriber::EnvFilter::try_from_env("IWA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let main = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
    }
    .with_filter(filter);
    let audit = match audit_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("cannot open the audit log {}: {e}", path.display()))?;
            Some(
                fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(Targets::new().with_target("iwa::audit", tracing::Level::INFO)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry().with(main).with(audit).init();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => {
            let report = check::check(&config);
            print!("{}", report.text);
            if report.ok {
                println!("check passed");
                ExitCode::SUCCESS
            } else {
                println!("check failed");
                ExitCode::FAILURE
            }
        }
        Command::Serve { config } => serve(&config),
        Command::Hash { user } => hash(&user),
        Command::Keygen { out, ed25519: true } => {
            match iwa::assertion::generate_ed25519_key_files(&out) {
                Ok(made) => {
                    println!(
                        "wrote {} (Ed25519 private key, mode 0600) and {} (public key for backends); kid {}",
                        made.private_key.display(),
                        made.public_key.display(),
                        made.kid
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keygen {
            out,
            ed25519: false,
        } => match iwa::ticket::KeyRing::generate_key_file(&out) {
            Ok(id) => {
                println!("wrote {} (key id {id})", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { once } => match demo::run(demo::DemoOptions { once }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn hash(user: &str) -> ExitCode {
    use std::io::{BufRead, IsTerminal};
    if !user.contains('\\') || user.starts_with('\\') || user.ends_with('\\') {
        eprintln!(
            "error: write the account as DOMAIN\\user (quote it in the shell: 'EXAMPLE\\alice')"
        );
        return ExitCode::FAILURE;
    }
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("password for {user} (not echoed): ");
        let _ = std::process::Command::new("stty").arg("-echo").status();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if tty {
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
    }
    if let Err(e) = read {
        eprintln!("error: cannot read the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("error: empty password");
        return ExitCode::FAILURE;
    }
    println!("{}", iwa::ntlm::users_file_line(user, password));
    ExitCode::SUCCESS
}

fn serve(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = init_logging(
        &config.log.level,
        config.log.format,
        config.log.audit_file.as_deref(),
    ) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let gateway = match server::Gateway::from_config(&config) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let listener = match server::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                error!("cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        if let Some(addr) = config.metrics_listen {
            match iwa_gateway::metrics::bind(addr).await {
                Ok(l) => {
                    // Ends with the runtime, after the gateway has drained.
                    tokio::spawn(iwa_gateway::metrics::serve(
                        l,
                        gateway.clone(),
                        std::future::pending(),
                    ));
                }
                Err(e) => {
                    error!("cannot listen for metrics on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        info!(
            listen = %config.listen,
            backend = %config.backend.describe(),
            "iwa {} listening on {}://{}",
            env!("CARGO_PKG_VERSION"),
            if config.tls.is_some() { "https" } else { "http" },
            config.listen
        );
        server::serve(
            listener,
            gateway,
            server::shutdown_signal(),
            config.shutdown_timeout,
        )
        .await;
        ExitCode::SUCCESS
    });
    // A blocking thread may still be waiting out MIT's own KDC timeouts for an LDAP
    // SASL GSSAPI bind (tens of seconds for a KDC that does not answer); dropping the
    // runtime would wait for it. Everything else has finished by now.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
