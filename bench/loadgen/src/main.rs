//! `iwa-loadgen` command line. See `bench/README.md`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use iwa_loadgen::kerberos::{Mech, TokenPool};
use iwa_loadgen::{Mode, RunConfig};

#[derive(Parser)]
#[command(
    name = "iwa-loadgen",
    about = "HTTP load generator for authenticating proxies"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop load test: fixed connections, fixed duration or request count.
    Run(RunArgs),
    /// Open N keep-alive connections, send one request on each, hold them open.
    Idle(IdleArgs),
    /// Only mint Kerberos tokens and report the client's minting rate.
    Mint(MintArgs),
    /// Print the NT hash (MD4 of the UTF-16LE password) in hex, for NTLM hash files.
    Nthash(NthashArgs),
}

#[derive(Args)]
struct NthashArgs {
    #[arg(long)]
    password: String,
}

#[derive(Args)]
struct RunArgs {
    /// Target, e.g. http://localhost:8080/
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value = "none")]
    mode: Mode,
    #[arg(long, short = 'c', default_value_t = 16)]
    connections: usize,
    /// Measured seconds (after warm-up). Ignored when --requests is given.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many measured requests instead.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Host header (default: the URL's authority).
    #[arg(long)]
    host: Option<String>,
    /// Reopen the connection after N requests (0 = never; default 1 for ntlm, else 0).
    #[arg(long)]
    reconnect_after: Option<u64>,
    /// Kerberos service: HTTP@host (host-based) or HTTP/host[@REALM]; default HTTP@<url host>.
    #[arg(long)]
    spn: Option<String>,
    #[arg(long, value_enum, default_value = "spnego")]
    mech: Mech,
    /// fresh: tokens to pre-mint (default: --rate-hint × (warmup + duration)).
    #[arg(long)]
    tokens: Option<usize>,
    /// fresh: expected req/s, used to size the token pool when --tokens is not given.
    #[arg(long, default_value_t = 8000.0)]
    rate_hint: f64,
    /// fresh: threads minting tokens before the run (default: CPUs available to us).
    #[arg(long)]
    mint_threads: Option<usize>,
    /// ntlm: user, password, domain.
    #[arg(long, default_value = "")]
    user: String,
    #[arg(long, default_value = "")]
    password: String,
    #[arg(long, default_value = "")]
    domain: String,
    /// ntlm: HTTP auth scheme carrying the NTLM messages.
    #[arg(long, default_value = "NTLM")]
    ntlm_scheme: String,
    /// Runtime worker threads (default: CPUs available to us; 1 = single-threaded runtime).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Smoke test: 1 s, no warm-up, 2 connections unless given; one-line output;
    /// exit status 1 unless some requests succeeded and none failed.
    #[arg(long)]
    brief: bool,
}

#[derive(Args)]
struct IdleArgs {
    #[arg(long)]
    url: String,
    #[arg(long, short = 'c', default_value_t = 10_000)]
    connections: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    parallel: usize,
    /// Seconds to hold the connections after they are open (the caller may kill us sooner).
    #[arg(long, default_value_t = 60.0)]
    hold: f64,
    #[arg(long)]
    host: Option<String>,
    /// `fresh`: a new Kerberos token on each connection's request; `none`: no auth.
    #[arg(long, value_enum, default_value = "none")]
    mode: Mode,
    /// Kerberos service for `--mode fresh`; default HTTP@<url host>.
    #[arg(long)]
    spn: Option<String>,
    #[arg(long, value_enum, default_value = "spnego")]
    mech: Mech,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MintArgs {
    #[arg(long, default_value = "HTTP@localhost")]
    spn: String,
    #[arg(long, value_enum, default_value = "spnego")]
    mech: Mech,
    #[arg(long, short = 'n', default_value_t = 2000)]
    count: usize,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long)]
    json: bool,
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => cmd_run(a),
        Cmd::Idle(a) => cmd_idle(a),
        Cmd::Mint(a) => cmd_mint(a),
        Cmd::Nthash(a) => {
            let h = iwa_loadgen::ntlm::nt_hash(&a.password);
            println!(
                "{}",
                h.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iwa-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn cmd_run(a: RunArgs) -> Result<ExitCode, String> {
    let mut cfg = RunConfig::new(a.url, a.mode);
    cfg.host = a.host;
    cfg.connections = if a.brief && a.connections == 16 {
        2
    } else {
        a.connections
    };
    cfg.duration = match (a.requests, a.brief) {
        (Some(_), _) => None,
        (None, true) => Some(Duration::from_secs(1)),
        (None, false) => Some(Duration::from_secs_f64(a.duration)),
    };
    cfg.requests = a.requests;
    cfg.warmup = Duration::from_secs_f64(if a.brief { 0.0 } else { a.warmup });
    cfg.timeout = Duration::from_secs_f64(a.timeout);
    cfg.reconnect_after = a.reconnect_after;
    cfg.spn = a.spn;
    cfg.mech = a.mech;
    cfg.tokens = a.tokens;
    cfg.rate_hint = a.rate_hint;
    cfg.mint_threads = a.mint_threads.unwrap_or_else(cpus);
    cfg.user = a.user;
    cfg.password = a.password;
    cfg.domain = a.domain;
    cfg.ntlm_scheme = a.ntlm_scheme;
    let rt = runtime(a.threads.unwrap_or_else(cpus)).map_err(|e| e.to_string())?;
    let report = rt.block_on(iwa_loadgen::run(cfg))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!("{}", report.human());
    }
    if a.brief && (report.ok == 0 || report.errors > 0) {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_idle(a: IdleArgs) -> Result<ExitCode, String> {
    let negotiate = match a.mode {
        Mode::None => None,
        Mode::Fresh => {
            let target = a
                .url
                .strip_prefix("http://")
                .and_then(|r| r.split(['/', ':']).next())
                .unwrap_or("localhost");
            Some((a.spn.unwrap_or_else(|| format!("HTTP@{target}")), a.mech))
        }
        other => return Err(format!("idle supports --mode none or fresh, not {other:?}")),
    };
    let rt = runtime(1).map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (report, conns) = iwa_loadgen::idle(
            &a.url,
            a.host.as_deref(),
            a.connections,
            a.parallel,
            negotiate,
        )
        .await?;
        if a.json {
            println!(
                "{}",
                serde_json::to_string(&report).map_err(|e| e.to_string())?
            );
        } else {
            println!(
                "{} of {} connections open ({} ok) in {:.1}s; errors {:?}; holding {}s",
                report.open,
                report.requested,
                report.ok,
                report.seconds_to_open,
                report.errors,
                a.hold
            );
        }
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
        drop(conns);
        Ok(ExitCode::SUCCESS)
    })
}

fn cmd_mint(a: MintArgs) -> Result<ExitCode, String> {
    let (_pool, stats) = TokenPool::mint(&a.spn, a.mech, a.count, a.threads)?;
    let rate = stats.per_core_rate();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "minted": stats.minted,
                "threads": stats.threads,
                "seconds": stats.elapsed.as_secs_f64(),
                "rate_per_core": rate,
                "us_per_token": if rate > 0.0 { 1e6 / rate } else { 0.0 },
            })
        );
    } else {
        println!(
            "minted {} tokens in {:.2}s on {} thread(s): {:.0} tokens/s per core ({:.1} us/token)",
            stats.minted,
            stats.elapsed.as_secs_f64(),
            stats.threads,
            rate,
            if rate > 0.0 { 1e6 / rate } else { 0.0 }
        );
    }
    Ok(ExitCode::SUCCESS)
}
