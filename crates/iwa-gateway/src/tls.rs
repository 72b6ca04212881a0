//! TLS termination (rustls, `ring` provider) and the RFC 5929 `tls-server-end-point`
//! channel bindings of the server certificate, for Extended Protection.
//!
//! The listener holds a [`ReloadableTls`]: every accepted connection takes a snapshot
//! ([`Tls`]: acceptor, certificate and its channel bindings) and keeps it for its whole
//! life, so a certificate replaced on SIGHUP is used by new handshakes only, and each
//! connection's binding hash is that of the certificate it was actually served.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use iwa::conn::{ChannelBinding, ExtendedProtection};
use iwa_proto::der::{Reader, Tag};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A loaded certificate chain and key: the acceptor and the chain's channel bindings.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// `None` when `extended_protection = "off"`.
    pub binding: Option<Arc<ChannelBinding>>,
    /// The RFC 5929 hash of the leaf certificate.
    pub cert_hash: Vec<u8>,
    /// The leaf certificate's DER.
    pub leaf: CertificateDer<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

/// ALPN protocol ID of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// Reads the PEM certificate chain (leaf first) and private key and builds the
/// server configuration: TLS 1.2 and 1.3, ALPN `http/1.1` only.
pub fn load(cert: &Path, key: &Path, mode: ExtendedProtection) -> Result<Tls, String> {
    load_with(cert, key, mode, false)
}

/// Like [`load`]; with `http2`, ALPN offers `h2` before `http/1.1`. Only for listeners
/// without NTLM: NTLM is bound to its connection and cannot work over HTTP/2.
pub fn load_with(
    cert: &Path,
    key: &Path,
    mode: ExtendedProtection,
    http2: bool,
) -> Result<Tls, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    let Some(leaf) = chain.first().cloned() else {
        return Err(format!("{} holds no certificate", cert.display()));
    };
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "{} and {} do not make a usable certificate and key: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let cert_hash = tls_server_end_point_hash(&leaf);
    let binding = (mode != ExtendedProtection::Off)
        .then(|| Arc::new(ChannelBinding::tls_server_end_point(&cert_hash, mode)));
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        binding,
        cert_hash,
        leaf,
    })
}

/// The listener's TLS: the current certificate and key, replaced on [`reload`]
/// (SIGHUP) without touching open connections.
///
/// [`reload`]: ReloadableTls::reload
pub struct ReloadableTls {
    cert: PathBuf,
    key: PathBuf,
    mode: ExtendedProtection,
    http2: bool,
    current: RwLock<Arc<Tls>>,
}

impl std::fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableTls")
            .field("cert", &self.cert)
            .field("http2", &self.http2)
            .finish_non_exhaustive()
    }
}

impl ReloadableTls {
    /// Loads the pair; `http2` offers `h2` by ALPN (see [`load_with`]).
    pub fn new(
        cert: &Path,
        key: &Path,
        mode: ExtendedProtection,
        http2: bool,
    ) -> Result<Self, String> {
        let tls = load_with(cert, key, mode, http2)?;
        Ok(ReloadableTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            mode,
            http2,
            current: RwLock::new(Arc::new(tls)),
        })
    }

    /// The pair for a new connection; the connection keeps it to its end.
    pub fn current(&self) -> Arc<Tls> {
        // A poisoned lock only means a panic while swapping in a complete value.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether ALPN offers `h2`.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// Reads the certificate and key files again. A pair that does not load (or a key
    /// that group/other can read) leaves the current one in place; the error says why.
    /// Returns the new certificate's description.
    pub fn reload(&self) -> Result<String, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&self.key)
            .map_err(|e| format!("cannot read {}: {e}", self.key.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{} is readable by group or others (run `chmod 600 {}`)",
                self.key.display(),
                self.key.display()
            ));
        }
        let tls = load_with(&self.cert, &self.key, self.mode, self.http2)?;
        let described = describe(&tls.leaf).unwrap_or_else(|| "certificate".into());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tls);
        Ok(described)
    }
}

// signatureAlgorithm OIDs (contents octets) whose hash is stronger than SHA-256.
const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const ECDSA_WITH_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const ECDSA_WITH_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];

/// The certificate's `signatureAlgorithm` OID (contents octets), if it parses.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let mut outer = Reader::new(cert);
    let mut certificate = outer.read_nested(Tag::SEQUENCE).ok()?;
    certificate.read_expected(Tag::SEQUENCE).ok()?; // tbsCertificate
    let mut alg = certificate.read_nested(Tag::SEQUENCE).ok()?;
    alg.read_oid().ok()
}

/// RFC 5929 §4.1 `tls-server-end-point`: the hash of the certificate's DER with the
/// hash function of its signature algorithm, SHA-256 when that is MD5 or SHA-1.
/// SHA-384 and SHA-512 signatures (RSA PKCS#1, ECDSA) use SHA-384/SHA-512; everything
/// else (SHA-256, RSA-PSS, Ed25519, unparsable) uses SHA-256, as Windows and most
/// clients do.
pub fn tls_server_end_point_hash(cert: &[u8]) -> Vec<u8> {
    match signature_algorithm(cert) {
        Some(SHA384_WITH_RSA | ECDSA_WITH_SHA384) => Sha384::digest(cert).to_vec(),
        Some(SHA512_WITH_RSA | ECDSA_WITH_SHA512) => Sha512::digest(cert).to_vec(),
        _ => Sha256::digest(cert).to_vec(),
    }
}

/// Subject and validity of the leaf certificate, for `iwa check` (best effort: the
/// printable parts only).
pub fn describe(leaf: &[u8]) -> Option<String> {
    let mut outer = Reader::new(leaf);
    let mut certificate = outer.read_nested(Tag::SEQUENCE).ok()?;
    let mut tbs = certificate.read_nested(Tag::SEQUENCE).ok()?;
    // version [0] EXPLICIT (optional), serialNumber, signature, issuer, validity, subject
    if tbs.peek_tag() == Some(Tag(0xa0)) {
        tbs.read_element().ok()?;
    }
    tbs.read_expected(Tag::INTEGER).ok()?;
    tbs.read_expected(Tag::SEQUENCE).ok()?;
    tbs.read_expected(Tag::SEQUENCE).ok()?;
    let mut validity = tbs.read_nested(Tag::SEQUENCE).ok()?;
    let _not_before = validity.read_element().ok()?;
    let not_after = validity.read_element().ok()?;
    let subject = tbs.read_expected(Tag::SEQUENCE).ok()?;
    let cn = common_names(subject.contents()).join(", ");
    Some(format!(
        "subject CN={} , expires {}",
        if cn.is_empty() { "(none)" } else { &cn },
        String::from_utf8_lossy(not_after.contents())
    ))
}

/// The commonName values of a Name (RDNSequence contents).
fn common_names(rdns: &[u8]) -> Vec<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let mut out = Vec::new();
    let mut r = Reader::new(rdns);
    while let Ok(set) = r.read_element() {
        let Ok(mut set) = set.reader() else { break };
        while let Ok(atv) = set.read_element() {
            let Ok(mut atv) = atv.reader() else { break };
            if atv.read_oid().ok() == Some(CN) {
                if let Ok(v) = atv.read_element() {
                    out.push(String::from_utf8_lossy(v.contents()).into_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate made by openssl with `args`, as DER.
    fn openssl_cert(args: &[&str]) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!(
            "iwa-tls-unit-{}-{}",
            std::process::id(),
            args.join("").len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("c.pem");
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-days",
                "1",
            ])
            .args(args)
            .arg("-keyout")
            .arg(dir.join("k.pem"))
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = CertificateDer::from_pem_file(&cert).unwrap().to_vec();
        let _ = std::fs::remove_dir_all(&dir);
        der
    }

    #[test]
    fn hash_follows_the_signature_algorithm() {
        let rsa256 = openssl_cert(&["-newkey", "rsa:2048", "-sha256"]);
        assert_eq!(
            tls_server_end_point_hash(&rsa256),
            Sha256::digest(&rsa256).to_vec()
        );
        // SHA-1 signatures bind with SHA-256 (RFC 5929 §4.1).
        let rsa1 = openssl_cert(&["-newkey", "rsa:2048", "-sha1"]);
        assert_eq!(
            tls_server_end_point_hash(&rsa1),
            Sha256::digest(&rsa1).to_vec()
        );
        let ec384 = openssl_cert(&[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-sha384",
        ]);
        assert_eq!(
            tls_server_end_point_hash(&ec384),
            Sha384::digest(&ec384).to_vec()
        );
        let rsa512 = openssl_cert(&["-newkey", "rsa:2048", "-sha512"]);
        assert_eq!(
            tls_server_end_point_hash(&rsa512),
            Sha512::digest(&rsa512).to_vec()
        );
        assert!(describe(&rsa256).unwrap().contains("CN=localhost"));
    }

    #[test]
    fn garbage_hashes_with_sha256() {
        assert_eq!(
            tls_server_end_point_hash(b"not a certificate"),
            Sha256::digest(b"not a certificate").to_vec()
        );
    }
}
