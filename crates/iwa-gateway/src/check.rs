//! `iwa check`: validate a configuration and its keytab without serving.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use iwa::keytab::{self, enctype_strength, Strength};

use crate::config::Config;

/// The report `iwa check` prints, and whether it found errors.
pub struct Report {
    pub text: String,
    pub ok: bool,
}

pub fn check(path: &Path) -> Report {
    let mut text = String::new();
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            return Report {
                text: format!("error: {e}"),
                ok: false,
            }
        }
    };
    let _ = writeln!(text, "config {}: OK", path.display());
    let _ = writeln!(text, "  listen  {}", config.listen);
    let _ = writeln!(text, "  backend {}", config.backend.describe());
    if let Some(m) = config.metrics_listen {
        let _ = writeln!(
            text,
            "  metrics http://{m}/metrics (plain HTTP, no login{})",
            if m.ip().is_loopback() {
                ""
            } else {
                ": restrict who reaches it"
            }
        );
    }
    let mut ok = true;
    if let crate::config::BackendTarget::Hosted(app) = &config.backend.target {
        let (h_text, h_ok) = check_hosted(app);
        text.push_str(&h_text);
        ok &= h_ok;
    }
    if let Some(k) = &config.kerberos {
        let (kt_text, kt_ok) = check_keytab(k);
        text.push_str(&kt_text);
        ok &= kt_ok;
    } else {
        text.push_str("kerberos: not configured\n");
    }
    match &config.ntlm {
        Some(n) => {
            let _ = writeln!(
                text,
                "ntlm: domain {}, validator {:?}",
                n.domain, n.validator
            );
            match &n.validator {
                crate::config::NtlmValidatorConfig::Local { users_file } => {
                    match iwa::ntlm::LocalValidator::load(users_file, &n.domain) {
                        Ok(_) => {
                            let _ = writeln!(text, "  users file {}: OK", users_file.display());
                        }
                        Err(e) => {
                            let _ = writeln!(text, "error: {e}");
                            ok = false;
                        }
                    }
                }
                crate::config::NtlmValidatorConfig::Winbind { .. } => {
                    let (wb_text, wb_ok) = check_winbind(&n.domain);
                    text.push_str(&wb_text);
                    ok &= wb_ok;
                }
            }
        }
        None => text.push_str("ntlm: not configured\n"),
    }
    match &config.ldap {
        Some(l) => {
            let (l_text, l_ok) = check_ldap(l);
            text.push_str(&l_text);
            ok &= l_ok;
        }
        None => match &config.directory_file {
            Some(f) => {
                let _ = writeln!(text, "directory: file {}", f.display());
            }
            None => text.push_str("ldap: not configured (group SIDs are not named)\n"),
        },
    }
    match &config.tls {
        Some(t) => match crate::tls::load(&t.cert, &t.key, t.extended_protection) {
            Ok(tls) => {
                let _ = writeln!(
                    text,
                    "tls: {} ({}), extended_protection {:?}",
                    t.cert.display(),
                    crate::tls::describe(&tls.leaf)
                        .unwrap_or_else(|| "certificate not described".into()),
                    t.extended_protection
                );
            }
            Err(e) => {
                let _ = writeln!(text, "error: tls: {e}");
                ok = false;
            }
        },
        None => text.push_str("tls: not configured (plain HTTP)\n"),
    }
    match &config.impersonation_cookie {
        Some(c) => match iwa::ticket::KeyRing::load(&c.key_file, &c.previous_key_files) {
            Ok(ring) => {
                let _ = writeln!(
                    text,
                    "impersonation: granted to {:?}, cookie {}, key {} (id {}, {} previous), idle {}s, max {}s",
                    config.impersonation.allow_impersonation,
                    c.cookie_name,
                    c.key_file.display(),
                    ring.current_id(),
                    c.previous_key_files.len(),
                    c.idle_timeout.as_secs(),
                    c.max_lifetime.as_secs()
                );
            }
            Err(e) => {
                let _ = writeln!(text, "error: impersonation keys: {e}");
                ok = false;
            }
        },
        None => text.push_str("impersonation: off (no allow_impersonation)\n"),
    }
    match &config.assertion {
        Some(a) => {
            let _ = writeln!(
                text,
                "assertion: {}, kid {}, audience {:?}, lifetime {}s",
                a.key.algorithm(),
                a.key.kid(),
                a.audience,
                a.lifetime.as_secs()
            );
            if let Some(pem) = a.key.public_key_pem() {
                let _ = write!(text, "  public key for backends:\n{pem}");
            }
        }
        None => text.push_str("assertion: not configured (no X-Iwa-Assertion)\n"),
    }
    Report { text, ok }
}

/// `[ldap]`: how it connects and binds; for a SASL GSSAPI bind, that the keytab holds
/// keys for the principal. Offline: no connection to the directory or the KDC.
fn check_ldap(l: &crate::config::Ldap) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let tls = if l.url.to_ascii_lowercase().starts_with("ldaps://") {
        "TLS"
    } else if l.starttls {
        "StartTLS"
    } else if l.gssapi.is_some() {
        "no TLS; sealed by the SASL GSSAPI layer"
    } else {
        "no TLS"
    };
    let bind = match (&l.gssapi, &l.bind_dn) {
        (Some(g), _) => format!(
            "SASL GSSAPI as {} to {} (keytab {})",
            g.principal,
            g.service_principal(),
            g.keytab.display()
        ),
        (None, Some(dn)) => format!("simple bind as {dn}"),
        (None, None) => "anonymous".into(),
    };
    let _ = writeln!(out, "ldap: {} ({tls}), {bind}", l.url);
    if let Some(g) = &l.gssapi {
        match std::fs::read(&g.keytab)
            .map_err(|e| e.to_string())
            .and_then(|d| keytab::parse(&d).map_err(|e| e.to_string()))
        {
            Ok(entries) => {
                let keys: Vec<&keytab::KeytabEntry> = entries
                    .iter()
                    .filter(|e| e.principal == g.principal)
                    .collect();
                if keys.is_empty() {
                    let mut held: Vec<&str> = Vec::new();
                    for e in &entries {
                        if !held.contains(&e.principal.as_str()) {
                            held.push(&e.principal);
                        }
                    }
                    let _ = writeln!(
                        out,
                        "error: ldap.principal {} has no key in the keytab {} (it holds: {})",
                        g.principal,
                        g.keytab.display(),
                        if held.is_empty() {
                            "nothing".into()
                        } else {
                            held.join(", ")
                        }
                    );
                    ok = false;
                } else {
                    let enctypes: Vec<String> = keys.iter().map(|k| k.enctype_name()).collect();
                    let _ = writeln!(
                        out,
                        "  {}: kvno {}, {}",
                        g.principal,
                        keys.iter().map(|k| k.kvno).max().unwrap_or(0),
                        enctypes.join(", ")
                    );
                    if keys
                        .iter()
                        .all(|k| enctype_strength(k.enctype) != Strength::Good)
                    {
                        let _ = writeln!(
                            out,
                            "  warning: {} has only weak keys (RC4/3DES/DES)",
                            g.principal
                        );
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(out, "error: ldap.keytab {}: {e}", g.keytab.display());
                ok = false;
            }
        }
    }
    match iwa::directory::LdapBackend::new(l.backend_settings()) {
        Ok(backend) => {
            // A live bind: what a login would do first. The gateway starts anyway when
            // the directory does not answer (groups then arrive as SIDs only).
            let probed = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| iwa::directory::DirectoryError::Unavailable(e.to_string()))
                .and_then(|rt| {
                    let r = rt.block_on(backend.probe());
                    // A KDC thread may still wait out MIT's own timeouts: do not wait.
                    rt.shutdown_timeout(std::time::Duration::from_millis(100));
                    r
                });
            match probed {
                Ok((netbios, dns)) => {
                    let _ = writeln!(
                        out,
                        "  bound; domain {} ({})",
                        netbios.as_deref().unwrap_or("?"),
                        dns.as_deref().unwrap_or("no DNS name")
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "warning: [ldap]: {e} (iwa still starts; group SIDs stay unnamed until the directory answers)"
                    );
                }
            }
        }
        Err(e) => {
            let _ = writeln!(out, "error: [ldap]: {e}");
            ok = false;
        }
    }
    (out, ok)
}

/// The hosted app's program (found, executable), working directory and log file.
fn check_hosted(app: &crate::config::HostedApp) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let program = app.command.first().map_or("", String::as_str);
    match find_program(program, &app.cwd) {
        Ok(path) => {
            let _ = writeln!(out, "hosted app: program {program}: {}", path.display());
        }
        Err(e) => {
            let _ = writeln!(out, "error: hosted app: program {program}: {e}");
            ok = false;
        }
    }
    if app.cwd.is_dir() {
        let _ = writeln!(out, "  cwd {}: OK", app.cwd.display());
    } else {
        let _ = writeln!(
            out,
            "error: hosted app: cwd {} is not a directory",
            app.cwd.display()
        );
        ok = false;
    }
    match &app.stdout_log {
        Some(f) => {
            let _ = writeln!(out, "  output to {}", f.display());
        }
        None => {
            let _ = writeln!(out, "  output to iwa's log as app[pid]: …");
        }
    }
    let _ = writeln!(
        out,
        "  startup_timeout {:?}, stop_timeout {:?}, restart backoff {:?}..{:?}, at most {} failures per minute",
        app.startup_timeout,
        app.stop_timeout,
        app.restart_backoff,
        app.restart_backoff_max,
        app.max_failures_per_minute
    );
    (out, ok)
}

/// Where `program` is: a path with a `/` is taken relative to `cwd` (as the app is
/// started there); a bare name is looked up on `PATH`. It must be an executable file.
fn find_program(program: &str, cwd: &Path) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = cwd.join(program);
        return if executable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(format!("{} is not an executable file", p.display()))
        } else {
            Err(format!("{} does not exist", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| "not found on PATH (or not executable)".to_owned())
}

/// Loads libwbclient, asks winbindd who it is and pings a domain controller.
fn check_winbind(domain: &str) -> (String, bool) {
    let mut out = String::new();
    match iwa::winbind::probe() {
        Ok(st) => {
            let _ = writeln!(
                out,
                "  winbindd {}: reachable, domain {} ({})",
                st.winbind_version, st.netbios_domain, st.dns_domain
            );
            let mut ok = true;
            if !st.netbios_domain.eq_ignore_ascii_case(domain) {
                let _ = writeln!(
                    out,
                    "warning: ntlm.domain is {domain} but winbindd serves {}",
                    st.netbios_domain
                );
            }
            match st.dc {
                Ok(dc) => {
                    let _ = writeln!(out, "  domain controller {dc}: NETLOGON OK");
                }
                Err(e) => {
                    let _ = writeln!(out, "error: winbindd cannot reach a domain controller: {e}");
                    ok = false;
                }
            }
            let _ = writeln!(
                out,
                "  note: logons use winbindd's privileged pipe; a non-root iwa needs the winbindd_priv group"
            );
            (out, ok)
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            (out, false)
        }
    }
}

fn check_keytab(kerberos: &crate::config::Kerberos) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let path = &kerberos.keytab;
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "error: keytab {}: cannot read: {e}", path.display());
            return (out, false);
        }
    };
    let entries = match keytab::parse(&data) {
        Ok(e) => e,
        Err(e) => {
            let _ = writeln!(out, "error: keytab {}: {e}", path.display());
            return (out, false);
        }
    };
    let _ = writeln!(out, "keytab {}: {} key(s)", path.display(), entries.len());
    let mut by_principal: BTreeMap<&str, Vec<&keytab::KeytabEntry>> = BTreeMap::new();
    for e in &entries {
        by_principal
            .entry(e.principal.as_str())
            .or_default()
            .push(e);
    }
    for (principal, keys) in &by_principal {
        let _ = writeln!(out, "  {principal}");
        for k in keys {
            let _ = writeln!(out, "    kvno {:<4} {}", k.kvno, k.enctype_name());
        }
        let strengths: Vec<Strength> = keys.iter().map(|k| enctype_strength(k.enctype)).collect();
        if strengths.iter().all(|s| *s != Strength::Good) {
            let _ = writeln!(
                out,
                "    warning: {principal} has only weak keys (RC4/3DES/DES): set msDS-SupportedEncryptionTypes to AES (24) and export the keytab again"
            );
        }
        if keys
            .iter()
            .any(|k| enctype_strength(k.enctype) == Strength::Broken)
        {
            let _ = writeln!(
                out,
                "    warning: {principal} has single-DES keys, which are broken; remove them"
            );
        }
    }
    if entries.is_empty() {
        let _ = writeln!(out, "error: the keytab holds no keys");
        ok = false;
    }
    match &kerberos.service_principal {
        Some(sp) => {
            let found = by_principal.keys().any(|p| principal_matches(p, sp));
            if found {
                let _ = writeln!(out, "service_principal {sp}: present");
            } else {
                let _ = writeln!(out, "error: service_principal {sp} is not in the keytab");
                ok = false;
            }
        }
        None => {
            let http: Vec<&str> = by_principal
                .keys()
                .copied()
                .filter(|p| p.starts_with("HTTP/"))
                .collect();
            if http.is_empty() {
                let _ = writeln!(out, "warning: no HTTP/ key in the keytab; browsers ask for HTTP/<host name in the URL>");
            } else {
                let _ = writeln!(
                    out,
                    "accepting tickets for any key in the keytab; HTTP keys: {}",
                    http.join(", ")
                );
            }
        }
    }
    let settings = iwa::KerberosSettings {
        keytab: path.clone(),
        service_principal: kerberos.service_principal.clone(),
        replay_cache: kerberos.replay_cache.clone(),
        realm_domains: kerberos.realm_domains.clone(),
        read_pac: false,
    };
    match iwa::KerberosAcceptor::new(&settings) {
        Ok(_) => {
            let _ = writeln!(out, "GSSAPI acceptor credential: acquired");
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "error: GSSAPI cannot acquire an acceptor credential: {e}"
            );
            ok = false;
        }
    }
    (out, ok)
}

/// `HTTP/web@EX.TEST` matches itself; a principal written without a realm matches any.
fn principal_matches(in_keytab: &str, configured: &str) -> bool {
    if configured.contains('@') {
        in_keytab == configured
    } else {
        iwa::identity::split_principal(in_keytab).0 == configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_matching() {
        assert!(principal_matches("HTTP/web@EX.TEST", "HTTP/web@EX.TEST"));
        assert!(principal_matches("HTTP/web@EX.TEST", "HTTP/web"));
        assert!(!principal_matches("HTTP/web@EX.TEST", "HTTP/other"));
        assert!(!principal_matches("HTTP/web@EX.TEST", "HTTP/web@OTHER"));
    }
}
