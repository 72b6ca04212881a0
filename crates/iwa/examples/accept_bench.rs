//! Times the Kerberos acceptor in-process: `accept_bench KEYTAB TOKENS_FILE`, where the
//! file holds one base64 Negotiate token per line (each used once). Prints µs/accept.
//! A profiling aid for the acceptor's own cost, separate from HTTP (bench/ measures that).

use std::time::Instant;

use iwa::{KerberosAcceptor, KerberosSettings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keytab = args
        .next()
        .ok_or("usage: accept_bench KEYTAB TOKENS_FILE")?;
    let tokens = args
        .next()
        .ok_or("usage: accept_bench KEYTAB TOKENS_FILE")?;
    let acceptor = KerberosAcceptor::new(&KerberosSettings {
        keytab: keytab.into(),
        replay_cache: std::env::var("IWA_BENCH_RCACHE").ok(),
        ..Default::default()
    })?;
    let text = std::fs::read_to_string(tokens)?;
    let tokens: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(l.trim())
        })
        .collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    let mut ok = 0usize;
    for t in &tokens {
        if acceptor.accept_negotiate(t, None).is_ok() {
            ok += 1;
        }
    }
    let el = t0.elapsed();
    println!(
        "{ok}/{} accepted, {:.1} µs/accept",
        tokens.len(),
        el.as_secs_f64() * 1e6 / tokens.len().max(1) as f64
    );
    Ok(())
}
