//! Minting Negotiate tokens (Kerberos AP-REQ, optionally SPNEGO-wrapped) through MIT
//! GSSAPI from the credential cache named by `KRB5CCNAME`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{
    Oid, GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mech {
    /// SPNEGO NegTokenInit carrying the Kerberos AP-REQ (what browsers and curl send).
    Spnego,
    /// A raw Kerberos GSS token.
    Krb5,
}

pub struct Minter {
    cred: Cred,
    target: Name,
    mech: Oid<'static>,
}

impl Minter {
    /// `spn` is either host-based (`HTTP@localhost`) or a principal (`HTTP/localhost`,
    /// optionally `@REALM`).
    pub fn new(spn: &str, mech: Mech) -> Result<Minter, String> {
        let kind = if spn.contains('/') {
            GSS_NT_KRB5_PRINCIPAL
        } else {
            GSS_NT_HOSTBASED_SERVICE
        };
        let target =
            Name::new(spn.as_bytes(), Some(kind)).map_err(|e| format!("target name {spn}: {e}"))?;
        let cred = Cred::acquire(None, None, CredUsage::Initiate, None)
            .map_err(|e| format!("acquiring client credentials (KRB5CCNAME?): {e}"))?;
        let mech = match mech {
            Mech::Spnego => GSS_MECH_SPNEGO,
            Mech::Krb5 => GSS_MECH_KRB5,
        };
        Ok(Minter { cred, target, mech })
    }

    /// One fresh initial context token, base64-encoded for an `Authorization` header.
    pub fn mint(&self) -> Result<String, String> {
        let mut ctx = ClientCtx::new(
            Some(self.cred.clone()),
            self.target.duplicate().map_err(|e| e.to_string())?,
            CtxFlags::GSS_C_MUTUAL_FLAG,
            Some(self.mech),
        );
        match ctx.step(None, None) {
            Ok(Some(tok)) => Ok(base64::engine::general_purpose::STANDARD.encode(&*tok)),
            Ok(None) => Err("GSSAPI produced no initial token".to_string()),
            Err(e) => Err(format!("gss_init_sec_context: {e}")),
        }
    }
}

/// Tokens minted before a run; each is handed out once.
pub struct TokenPool {
    tokens: Vec<String>,
    next: AtomicUsize,
}

pub struct MintStats {
    pub minted: usize,
    pub elapsed: Duration,
    pub threads: usize,
}

impl MintStats {
    /// Tokens per second per minting thread: the client's per-core ceiling for `fresh`.
    pub fn per_core_rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s == 0.0 {
            0.0
        } else {
            self.minted as f64 / s / self.threads as f64
        }
    }
}

impl TokenPool {
    /// Mints `count` tokens on `threads` threads.
    pub fn mint(
        spn: &str,
        mech: Mech,
        count: usize,
        threads: usize,
    ) -> Result<(TokenPool, MintStats), String> {
        let threads = threads.clamp(1, count.max(1));
        // Fetch the service ticket once before timing so every thread finds it cached.
        Minter::new(spn, mech)?.mint()?;
        let start = Instant::now();
        let per = count.div_ceil(threads);
        let results: Vec<Result<Vec<String>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let n = per.min(count.saturating_sub(t * per));
                    s.spawn(move || {
                        let m = Minter::new(spn, mech)?;
                        (0..n).map(|_| m.mint()).collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("minting thread panicked".into()))
                })
                .collect()
        });
        let elapsed = start.elapsed();
        let mut tokens = Vec::with_capacity(count);
        for r in results {
            tokens.extend(r?);
        }
        let stats = MintStats {
            minted: tokens.len(),
            elapsed,
            threads,
        };
        Ok((
            TokenPool {
                tokens,
                next: AtomicUsize::new(0),
            },
            stats,
        ))
    }

    pub fn take(&self) -> Option<&str> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.tokens.get(i).map(String::as_str)
    }

    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(self.tokens.len())
    }
}
