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
    /// Write a new random key file for session/impersonation tickets (mode 0600).
    Keygen {
        /// Where to write it; refuses to overwrite an existing file.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Show single sign-on working on a throwaway loopback realm (needs the MIT KDC
    /// packages and curl; `scripts/demo` installs them).
    Demo {
        /// Exit after one authenticated request instead of waiting for Ctrl-C.
        #[arg(long)]
        once: bool,
    },
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IWA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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
        Command::Keygen { out } => match iwa::ticket::KeyRing::generate_key_file(&out) {
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
    init_logging(&config.log.level, config.log.format);
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
    runtime.block_on(async {
        let listener = match server::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                error!("cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        info!(
            listen = %config.listen,
            backend = %config.backend.url,
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
    })
}
