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
    let _ = writeln!(text, "  backend {}", config.backend.url);
    let mut ok = true;
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
    Report { text, ok }
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
