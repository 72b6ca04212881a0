//! The signed identity assertion (`X-Iwa-Assertion`): a compact JWS (RFC 7515) over the
//! verified identity, so a backend can check that the identity headers really came from
//! its gateway and were meant for it. Short-lived, bound to the request's method and
//! path and to an audience naming the backend.
//!
//! # Algorithms and keys
//!
//! - `HS256` (RFC 7518 §3.2): a shared secret of at least 32 bytes that gateway and
//!   backend both hold.
//! - `EdDSA` with Ed25519 (RFC 8037): the gateway holds the private key, backends only the
//!   public key, so a backend cannot mint assertions. The private key file is unencrypted
//!   PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`; v1 as [`generate_ed25519_key_files`]
//!   and `openssl genpkey -algorithm ed25519` write it, or v2 with the public key), mode
//!   0600; the public key is SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`),
//!   which Python's `cryptography`, OpenSSL and Java read as is.
//!
//! The header is `{"alg":…,"kid":…,"typ":"JWT"}`. The key id (`kid`) is the first 8 bytes
//! of SHA-256, base64url without padding, over the raw 32-byte Ed25519 public key, or
//! over the HS256 secret (like the session key ids). [`verify`] takes a set of keys and
//! tries only those whose algorithm is the token's `alg` and, when the token names one,
//! whose `kid` matches: an HS256 secret never checks an EdDSA token nor an Ed25519 key an
//! HS256 one (each key type has its own check), and `alg: none` or any other algorithm
//! is refused. To rotate, give backends the new key beside the old one, switch the
//! gateway, then drop the old key after one assertion lifetime.
//!
//! # Claims
//!
//! `sub` (`X-Remote-User`), `upn` (principal), `sid`, `groups`, `group_sids`, `amr`
//! (`Kerberos`/`NTLM`/`Fake`), `act` (the impersonator, when impersonating), `iat`,
//! `exp`, `aud`, `htm` (method), `htu` (path and query, as the client sent them).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::identity::Identity;

type HmacSha256 = Hmac<Sha256>;

/// Longest token [`verify`] looks at.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest key file read (a PEM Ed25519 key is about 120 bytes).
const MAX_KEY_FILE_LEN: u64 = 16 * 1024;
/// Shortest HS256 secret.
const MIN_SECRET_LEN: usize = 32;
/// Bytes of SHA-256 in a key id.
const KID_BYTES: usize = 8;
/// DER of an Ed25519 SubjectPublicKeyInfo up to the key (RFC 8410 §4): SEQUENCE {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) … }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER of an Ed25519 PKCS#8 v1 private key up to the 32-byte seed (RFC 8410 §7):
/// SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING … } }.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The JWS algorithms an assertion may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC-SHA-256 with a shared secret.
    Hs256,
    /// Ed25519 (RFC 8037 `EdDSA`).
    EdDsa,
}

impl Algorithm {
    /// The JOSE name: `HS256` or `EdDSA`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// From the exact JOSE name; anything else (`none`, `hs256`, `RS256`…) is `None`.
    pub fn from_jose(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Algorithm::Hs256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of an assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub upn: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub group_sids: Vec<String>,
    pub amr: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub act: Option<String>,
    pub iat: u64,
    pub exp: u64,
    pub aud: String,
    pub htm: String,
    pub htu: String,
}

/// Why an assertion was refused, or a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    #[error("not a compact JWS (three base64url parts, a JSON object header)")]
    Malformed,
    #[error("unsupported JWS algorithm (only HS256 and EdDSA are accepted)")]
    UnsupportedAlgorithm,
    #[error("unsupported JWS header (critical extensions are not understood)")]
    UnsupportedHeader,
    #[error("no verification key for this assertion ({alg}, kid {kid:?})")]
    UnknownKey {
        alg: &'static str,
        kid: Option<String>,
    },
    #[error("signature does not verify (wrong key, or the assertion was altered)")]
    BadSignature,
    #[error("claims are not valid JSON of the expected shape")]
    BadClaims,
    #[error("assertion expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("assertion issued in the future ({iat}, now {now})")]
    NotYetValid { iat: u64, now: u64 },
    #[error("assertion is for audience {found:?}, not {expected:?}")]
    WrongAudience { expected: String, found: String },
    #[error("assertion is for {found}, not this request ({expected})")]
    WrongRequest { expected: String, found: String },
    #[error("the assertion secret must be at least 32 bytes")]
    ShortSecret,
    #[error("not an Ed25519 private key: {0}")]
    BadPrivateKey(String),
    #[error("not an Ed25519 public key: {0}")]
    BadPublicKey(&'static str),
    #[error("the system random number generator failed")]
    Random,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// First 8 bytes of SHA-256 over `bytes`, base64url.
fn key_id(bytes: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    // KID_BYTES (8) < 32: the range is within the fixed-size digest.
    URL_SAFE_NO_PAD.encode(&digest[..KID_BYTES])
}

/// The base64url protected header for `alg` and `kid` (a base64url key id: nothing to
/// escape in JSON).
fn header_b64(alg: Algorithm, kid: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"{}","kid":"{kid}","typ":"JWT"}}"#,
        alg.as_str()
    ))
}

fn hmac(secret: &[u8], signing_input: &[u8]) -> Result<HmacSha256, AssertionError> {
    let mut m =
        <HmacSha256 as Mac>::new_from_slice(secret).map_err(|_| AssertionError::ShortSecret)?;
    m.update(signing_input);
    Ok(m)
}

/// The body of the first `-----BEGIN {label}-----` block, base64-decoded.
fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?.checked_add(begin.len())?;
    let rest = text.get(start..)?;
    let body = rest.get(..rest.find(&end)?)?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(b64).ok()
}

/// RFC 7468 text: 64-column base64 lines between the BEGIN/END lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An Ed25519 SubjectPublicKeyInfo PEM for a raw public key.
fn spki_pem(raw: &[u8]) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(raw);
    pem_encode("PUBLIC KEY", &der)
}

/// A freshly generated Ed25519 key ([`SigningKey::generate_ed25519`]).
pub struct NewEd25519Key {
    pub key: SigningKey,
    /// PKCS#8 v2 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key_pem: Zeroizing<String>,
    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: String,
}

enum SigningMaterial {
    Hs256(Zeroizing<Vec<u8>>),
    Ed25519(Ed25519KeyPair),
}

/// The gateway's key: an HS256 secret or an Ed25519 key pair, with its key id.
#[derive(Clone)]
pub struct SigningKey {
    material: Arc<SigningMaterial>,
    kid: String,
    header_b64: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HS256 secret (at least 32 bytes).
    pub fn hs256(secret: Vec<u8>) -> Result<Self, AssertionError> {
        let secret = Zeroizing::new(secret);
        if secret.len() < MIN_SECRET_LEN {
            return Err(AssertionError::ShortSecret);
        }
        let kid = key_id(&secret);
        Ok(Self::from_material(SigningMaterial::Hs256(secret), kid))
    }

    /// An Ed25519 key from unencrypted PKCS#8 DER (v1, or v2 whose public key must
    /// match the private one).
    pub fn ed25519_from_pkcs8_der(der: &[u8]) -> Result<Self, AssertionError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| AssertionError::BadPrivateKey(format!("PKCS#8 rejected: {e}")))?;
        Ok(Self::from_ed25519_pair(pair))
    }

    /// An Ed25519 key from a PEM `PRIVATE KEY` (unencrypted PKCS#8) block.
    pub fn ed25519_from_pem(pem: &str) -> Result<Self, AssertionError> {
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(AssertionError::BadPrivateKey(
                "the key is encrypted; iwa reads unencrypted PKCS#8 (mode 0600)".into(),
            ));
        }
        let der = Zeroizing::new(pem_decode(pem, "PRIVATE KEY").ok_or_else(|| {
            AssertionError::BadPrivateKey(
                "no `-----BEGIN PRIVATE KEY-----` (PKCS#8 PEM) block".into(),
            )
        })?);
        Self::ed25519_from_pkcs8_der(&der)
    }

    fn from_ed25519_pair(pair: Ed25519KeyPair) -> Self {
        let kid = key_id(pair.public_key().as_ref());
        Self::from_material(SigningMaterial::Ed25519(pair), kid)
    }

    fn from_material(material: SigningMaterial, kid: String) -> Self {
        let alg = match material {
            SigningMaterial::Hs256(_) => Algorithm::Hs256,
            SigningMaterial::Ed25519(_) => Algorithm::EdDsa,
        };
        SigningKey {
            header_b64: header_b64(alg, &kid),
            material: Arc::new(material),
            kid,
        }
    }

    /// A new random Ed25519 key, with its PKCS#8 v1 PEM (what the private key file
    /// holds; the form `openssl genpkey -algorithm ed25519` writes and OpenSSL and
    /// Python's `cryptography` read, which ring's v2 output is not) and its public key PEM.
    pub fn generate_ed25519() -> Result<NewEd25519Key, AssertionError> {
        let mut der = Zeroizing::new(ED25519_PKCS8_V1_PREFIX.to_vec());
        let mut seed = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), seed.as_mut_slice())
            .map_err(|_| AssertionError::Random)?;
        der.extend_from_slice(seed.as_slice());
        // Parsed back exactly as a key file is read.
        let key = Self::ed25519_from_pkcs8_der(&der)?;
        let public_key_pem = key.public_key_pem().ok_or(AssertionError::BadPrivateKey(
            "internal error: a generated Ed25519 key has no public key".into(),
        ))?;
        Ok(NewEd25519Key {
            private_key_pem: Zeroizing::new(pem_encode("PRIVATE KEY", &der)),
            public_key_pem,
            key,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match *self.material {
            SigningMaterial::Hs256(_) => Algorithm::Hs256,
            SigningMaterial::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    /// The key id put in the JWS header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw Ed25519 public key; `None` for HS256.
    pub fn ed25519_public_key(&self) -> Option<[u8; 32]> {
        match &*self.material {
            SigningMaterial::Hs256(_) => None,
            SigningMaterial::Ed25519(pair) => pair.public_key().as_ref().try_into().ok(),
        }
    }

    /// The public key as SubjectPublicKeyInfo PEM, for backends; `None` for HS256.
    pub fn public_key_pem(&self) -> Option<String> {
        self.ed25519_public_key().map(|raw| spki_pem(&raw))
    }

    /// The key that verifies this key's signatures (the secret itself for HS256).
    pub fn verifying_key(&self) -> VerifyingKey {
        match &*self.material {
            SigningMaterial::Hs256(secret) => VerifyingKey {
                kid: self.kid.clone(),
                material: VerifyingMaterial::Hs256(secret.clone()),
            },
            SigningMaterial::Ed25519(pair) => {
                let mut raw = [0u8; 32];
                raw.copy_from_slice(pair.public_key().as_ref());
                VerifyingKey::ed25519(raw)
            }
        }
    }

    /// `header.payload.signature` with this key's header (the header is an argument
    /// only for tests, which need odd headers signed).
    fn sign_compact(&self, header_b64: &str, payload: &[u8]) -> Result<String, AssertionError> {
        let input = format!("{header_b64}.{}", URL_SAFE_NO_PAD.encode(payload));
        let sig = match &*self.material {
            SigningMaterial::Hs256(secret) => hmac(secret, input.as_bytes())?
                .finalize()
                .into_bytes()
                .to_vec(),
            SigningMaterial::Ed25519(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

#[derive(Clone)]
enum VerifyingMaterial {
    Hs256(Zeroizing<Vec<u8>>),
    Ed25519([u8; 32]),
}

/// A key a backend accepts assertions under: an HS256 secret or an Ed25519 public key.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    material: VerifyingMaterial,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An HS256 secret (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, AssertionError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AssertionError::ShortSecret);
        }
        Ok(VerifyingKey {
            kid: key_id(secret),
            material: VerifyingMaterial::Hs256(Zeroizing::new(secret.to_vec())),
        })
    }

    /// A raw 32-byte Ed25519 public key.
    pub fn ed25519(public_key: [u8; 32]) -> Self {
        VerifyingKey {
            kid: key_id(&public_key),
            material: VerifyingMaterial::Ed25519(public_key),
        }
    }

    /// An Ed25519 SubjectPublicKeyInfo (DER).
    pub fn ed25519_from_spki_der(der: &[u8]) -> Result<Self, AssertionError> {
        let raw =
            der.strip_prefix(&ED25519_SPKI_PREFIX[..])
                .ok_or(AssertionError::BadPublicKey(
                    "not an Ed25519 SubjectPublicKeyInfo (OID 1.3.101.112)",
                ))?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| AssertionError::BadPublicKey("the key is not 32 bytes"))?;
        Ok(Self::ed25519(raw))
    }

    /// An Ed25519 public key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block, as
    /// `iwa keygen --ed25519` writes it.
    pub fn ed25519_from_pem(pem: &str) -> Result<Self, AssertionError> {
        let der = pem_decode(pem, "PUBLIC KEY").ok_or(AssertionError::BadPublicKey(
            "no `-----BEGIN PUBLIC KEY-----` PEM block",
        ))?;
        Self::ed25519_from_spki_der(&der)
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.material {
            VerifyingMaterial::Hs256(_) => Algorithm::Hs256,
            VerifyingMaterial::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Whether `sig` is this key's signature over `input`. Each key type checks with its
    /// own algorithm only; the token's header never chooses how a key is used.
    fn check(&self, input: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            VerifyingMaterial::Hs256(secret) => {
                hmac(secret, input).is_ok_and(|m| m.verify_slice(sig).is_ok())
            }
            VerifyingMaterial::Ed25519(pk) => UnparsedPublicKey::new(&ED25519, pk)
                .verify(input, sig)
                .is_ok(),
        }
    }
}

/// Signs assertions for one backend (audience) with one key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    pub audience: String,
    pub lifetime: Duration,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.key.algorithm())
            .field("kid", &self.key.kid)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// An HS256 signer with a shared secret (at least 32 bytes).
    pub fn new(
        secret: Vec<u8>,
        audience: impl Into<String>,
        lifetime: Duration,
    ) -> Result<Self, AssertionError> {
        Ok(Self::with_key(
            SigningKey::hs256(secret)?,
            audience,
            lifetime,
        ))
    }

    /// A signer with any key (HS256 or Ed25519).
    pub fn with_key(key: SigningKey, audience: impl Into<String>, lifetime: Duration) -> Self {
        Signer {
            key,
            audience: audience.into(),
            lifetime,
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The assertion for `identity` on request `method` `path_and_query` at `now`.
    pub fn sign(
        &self,
        identity: &Identity,
        impersonator: Option<&str>,
        method: &str,
        path_and_query: &str,
        now: SystemTime,
    ) -> Result<String, AssertionError> {
        let iat = unix(now);
        let claims = Claims {
            sub: identity.remote_user(),
            upn: identity.principal.clone(),
            sid: identity.sid.clone(),
            groups: identity
                .groups
                .iter()
                .filter_map(|g| g.name.clone())
                .collect(),
            group_sids: identity
                .groups
                .iter()
                .filter_map(|g| g.sid.clone())
                .collect(),
            amr: identity.method.as_str().to_owned(),
            act: impersonator.map(str::to_owned),
            iat,
            exp: iat.saturating_add(self.lifetime.as_secs()),
            aud: self.audience.clone(),
            htm: method.to_owned(),
            htu: path_and_query.to_owned(),
        };
        self.sign_claims(&claims)
    }

    /// Signs `claims` as they are (tests and tools; [`Signer::sign`] builds them).
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, AssertionError> {
        let payload = serde_json::to_vec(claims).map_err(|_| AssertionError::BadClaims)?;
        self.key.sign_compact(&self.key.header_b64, &payload)
    }
}

/// The JWS protected header as read. Other members (`typ`, `cty`…) are ignored; keys
/// embedded in the header (`jwk`, `jku`, `x5c`…) are never used.
#[derive(Deserialize)]
struct JwsHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Checks the JWS signature of `token` against `keys` and returns the payload bytes.
fn verify_signature(keys: &[VerifyingKey], token: &str) -> Result<Vec<u8>, AssertionError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AssertionError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AssertionError::Malformed);
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| AssertionError::Malformed)?;
    let header: JwsHeader =
        serde_json::from_slice(&header_json).map_err(|_| AssertionError::Malformed)?;
    let alg = Algorithm::from_jose(&header.alg).ok_or(AssertionError::UnsupportedAlgorithm)?;
    if header.crit.is_some() {
        return Err(AssertionError::UnsupportedHeader);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| AssertionError::Malformed)?;
    let input_len = h.len() + 1 + p.len();
    let input = token.get(..input_len).ok_or(AssertionError::Malformed)?;
    let mut candidates = keys
        .iter()
        .filter(|k| k.algorithm() == alg)
        .filter(|k| header.kid.as_deref().is_none_or(|kid| kid == k.kid))
        .peekable();
    if candidates.peek().is_none() {
        return Err(AssertionError::UnknownKey {
            alg: alg.as_str(),
            kid: header.kid,
        });
    }
    if !candidates.any(|k| k.check(input.as_bytes(), &sig)) {
        return Err(AssertionError::BadSignature);
    }
    URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| AssertionError::Malformed)
}

/// What a backend checks: the signature against `keys` (chosen by the token's `alg`
/// and `kid`; HMAC compared in constant time), expiry and issue time (with `leeway`),
/// the audience, and that the assertion is for this request (`method`, and
/// `path_and_query` exactly as the client sent it to the gateway).
pub fn verify(
    keys: &[VerifyingKey],
    token: &str,
    audience: &str,
    method: &str,
    path_and_query: &str,
    now: SystemTime,
    leeway: Duration,
) -> Result<Claims, AssertionError> {
    let payload = verify_signature(keys, token)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| AssertionError::BadClaims)?;
    let now = unix(now);
    let leeway = leeway.as_secs();
    if now > claims.exp.saturating_add(leeway) {
        return Err(AssertionError::Expired {
            exp: claims.exp,
            now,
        });
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(AssertionError::NotYetValid {
            iat: claims.iat,
            now,
        });
    }
    if claims.aud != audience {
        return Err(AssertionError::WrongAudience {
            expected: audience.to_owned(),
            found: claims.aud,
        });
    }
    if claims.htm != method || claims.htu != path_and_query {
        return Err(AssertionError::WrongRequest {
            expected: format!("{method} {path_and_query}"),
            found: format!("{} {}", claims.htm, claims.htu),
        });
    }
    Ok(claims)
}

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is readable by group or others: run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf },
    #[error("{} is too large to be a key file", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: AssertionError,
    },
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} ends in .pub, where the public key would go: name the private key e.g. assertion.key", path.display())]
    PrivateKeyNamedPub { path: PathBuf },
    #[error("{0}")]
    Generate(AssertionError),
}

/// Reads a whole (small) file; with `private`, refused when group or others may access
/// it (checked on the opened file, so a symlink is judged by its target).
fn read_key_file(path: &Path, private: bool) -> Result<Zeroizing<String>, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    if private {
        let meta = file.metadata().map_err(read_err)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
            });
        }
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyFileError::Key {
        path: path.to_owned(),
        source: if private {
            AssertionError::BadPrivateKey("not PEM text".into())
        } else {
            AssertionError::BadPublicKey("not PEM text")
        },
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Reads the gateway's Ed25519 private key file (PKCS#8 PEM, mode 0600).
pub fn read_ed25519_private_key_file(path: &Path) -> Result<SigningKey, KeyFileError> {
    let text = read_key_file(path, true)?;
    SigningKey::ed25519_from_pem(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Reads an Ed25519 public key file (SubjectPublicKeyInfo PEM), for a backend.
pub fn read_ed25519_public_key_file(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let text = read_key_file(path, false)?;
    VerifyingKey::ed25519_from_pem(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Where [`generate_ed25519_key_files`] puts the public key for `private`: the same name
/// with the extension `.pub` (`assertion.key` → `assertion.pub`).
pub fn public_key_path(private: &Path) -> PathBuf {
    private.with_extension("pub")
}

/// What [`generate_ed25519_key_files`] wrote.
#[derive(Debug, Clone)]
pub struct GeneratedKeyFiles {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    pub kid: String,
}

fn create_new(path: &Path, mode: u32, contents: &[u8]) -> Result<(), KeyFileError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::AlreadyExists {
                    path: path.to_owned(),
                }
            } else {
                KeyFileError::Write {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        // Best effort: do not leave a partial key behind to be loaded later.
        let _ = std::fs::remove_file(path);
        return Err(KeyFileError::Write {
            path: path.to_owned(),
            source,
        });
    }
    Ok(())
}

/// Generates an Ed25519 key pair: the private key (PKCS#8 PEM) to `private`, mode 0600,
/// and the public key (SubjectPublicKeyInfo PEM) to [`public_key_path`], mode 0644.
/// Never overwrites: either file existing is an error and nothing is written.
pub fn generate_ed25519_key_files(private: &Path) -> Result<GeneratedKeyFiles, KeyFileError> {
    let public = public_key_path(private);
    if public == private {
        return Err(KeyFileError::PrivateKeyNamedPub {
            path: private.to_owned(),
        });
    }
    if public.symlink_metadata().is_ok() {
        return Err(KeyFileError::AlreadyExists { path: public });
    }
    let new = SigningKey::generate_ed25519().map_err(KeyFileError::Generate)?;
    create_new(private, 0o600, new.private_key_pem.as_bytes())?;
    if let Err(e) = create_new(&public, 0o644, new.public_key_pem.as_bytes()) {
        // Do not leave a private key without its public half.
        let _ = std::fs::remove_file(private);
        return Err(e);
    }
    Ok(GeneratedKeyFiles {
        private_key: private.to_owned(),
        public_key: public,
        kid: new.key.kid().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AuthMethod, Group};
    use std::collections::BTreeMap;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const LEEWAY: Duration = Duration::from_secs(5);

    /// RFC 8037 Appendix A.1 (the Ed25519 key) and A.4 (the JWS it makes).
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_HEADER_B64: &str = "eyJhbGciOiJFZERTQSJ9";
    const RFC8037_PAYLOAD: &[u8] = b"Example of Ed25519 signing";
    const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    /// RFC 8410 §10.3 (a PKCS#8 v1 private key, as `openssl genpkey` writes them) and
    /// §10.1 (its public key).
    const RFC8410_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
    const RFC8410_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";

    fn alice() -> Identity {
        let mut m = BTreeMap::new();
        m.insert("EX.TEST".to_owned(), "EX".to_owned());
        let mut id = Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &m);
        id.groups.push(Group {
            sid: Some("S-1-5-21-1-2-3-513".into()),
            name: Some("EX\\Domain Users".into()),
        });
        id
    }

    fn hs_key() -> VerifyingKey {
        VerifyingKey::hs256(SECRET).unwrap()
    }

    fn ed_signer() -> Signer {
        let key = SigningKey::generate_ed25519().unwrap().key;
        Signer::with_key(key, "app", Duration::from_secs(60))
    }

    fn b64_json(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn parts(t: &str) -> Vec<String> {
        t.split('.').map(str::to_owned).collect()
    }

    /// The token with its claims edited as text, under the old header and signature.
    fn with_claims_edited(t: &str, from: &str, to: &str) -> String {
        let p = parts(t);
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(&p[1]).unwrap()).unwrap();
        assert!(claims.contains(from), "{claims}");
        format!("{}.{}.{}", p[0], b64_json(&claims.replace(from, to)), p[2])
    }

    #[test]
    fn hs256_header_names_alg_and_kid() {
        let s = Signer::new(SECRET.to_vec(), "app", Duration::from_secs(60)).unwrap();
        let t = s
            .sign(&alice(), None, "GET", "/", SystemTime::now())
            .unwrap();
        let h = URL_SAFE_NO_PAD.decode(&parts(&t)[0]).unwrap();
        let kid = key_id(SECRET);
        assert_eq!(kid.len(), 11, "8 bytes, base64url");
        assert_eq!(
            String::from_utf8(h).unwrap(),
            format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"JWT"}}"#)
        );
        assert_eq!(s.key().kid(), kid);
        assert_eq!(hs_key().kid(), kid);
    }

    #[test]
    fn sign_then_verify() {
        let s = Signer::new(SECRET.to_vec(), "app", Duration::from_secs(60)).unwrap();
        let now = SystemTime::now();
        let t = s.sign(&alice(), None, "GET", "/x?y=1", now).unwrap();
        let c = verify(&[hs_key()], &t, "app", "GET", "/x?y=1", now, LEEWAY).unwrap();
        assert_eq!(c.sub, "EX\\alice");
        assert_eq!(c.upn, "alice@EX.TEST");
        assert_eq!(c.amr, "Kerberos");
        assert_eq!(c.groups, vec!["EX\\Domain Users"]);
        assert_eq!(c.group_sids, vec!["S-1-5-21-1-2-3-513"]);
        assert_eq!(c.exp - c.iat, 60);
        // A token without a kid (as before key ids) is checked against every HS256 key.
        let p = parts(&t);
        let legacy_header = b64_json(r#"{"alg":"HS256","typ":"JWT"}"#);
        let input = format!("{legacy_header}.{}", p[1]);
        let tag = hmac(SECRET, input.as_bytes())
            .unwrap()
            .finalize()
            .into_bytes();
        let legacy = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag));
        assert!(verify(&[hs_key()], &legacy, "app", "GET", "/x?y=1", now, LEEWAY).is_ok());
    }

    #[test]
    fn every_refusal() {
        let s = Signer::new(SECRET.to_vec(), "app", Duration::from_secs(60)).unwrap();
        let now = SystemTime::now();
        let t = s.sign(&alice(), None, "GET", "/x", now).unwrap();
        let v = |tok: &str, aud: &str, m: &str, p: &str, at: SystemTime| {
            verify(&[hs_key()], tok, aud, m, p, at, LEEWAY)
        };
        assert_eq!(
            v(&t, "other", "GET", "/x", now).unwrap_err(),
            AssertionError::WrongAudience {
                expected: "other".into(),
                found: "app".into()
            }
        );
        assert!(matches!(
            v(&t, "app", "POST", "/x", now),
            Err(AssertionError::WrongRequest { .. })
        ));
        assert!(matches!(
            v(&t, "app", "GET", "/y", now),
            Err(AssertionError::WrongRequest { .. })
        ));
        assert!(matches!(
            v(&t, "app", "GET", "/x", now + Duration::from_secs(120)),
            Err(AssertionError::Expired { .. })
        ));
        assert!(matches!(
            v(&t, "app", "GET", "/x", now - Duration::from_secs(120)),
            Err(AssertionError::NotYetValid { .. })
        ));
        // Another secret has another kid.
        let other = VerifyingKey::hs256(b"another-secret-another-secret-xx").unwrap();
        assert_eq!(
            verify(&[other], &t, "app", "GET", "/x", now, Duration::ZERO).unwrap_err(),
            AssertionError::UnknownKey {
                alg: "HS256",
                kid: Some(key_id(SECRET))
            }
        );
        // Tamper with the payload: swap in other claims under the old signature.
        let forged = with_claims_edited(&t, "alice", "admin");
        assert_eq!(
            v(&forged, "app", "GET", "/x", now).unwrap_err(),
            AssertionError::BadSignature
        );
        // alg=none and friends.
        let p = parts(&t);
        let none = format!("{}.{}.", b64_json(r#"{"alg":"none"}"#), p[1]);
        assert_eq!(
            v(&none, "app", "GET", "/x", now).unwrap_err(),
            AssertionError::UnsupportedAlgorithm
        );
        let lower = format!("{}.{}.{}", b64_json(r#"{"alg":"hs256"}"#), p[1], p[2]);
        assert_eq!(
            v(&lower, "app", "GET", "/x", now).unwrap_err(),
            AssertionError::UnsupportedAlgorithm
        );
        assert_eq!(
            v("a.b", "app", "GET", "/x", now).unwrap_err(),
            AssertionError::Malformed
        );
        let not_object = format!("{}.{}.{}", b64_json("[]"), p[1], p[2]);
        assert_eq!(
            v(&not_object, "app", "GET", "/x", now).unwrap_err(),
            AssertionError::Malformed
        );
        assert!(Signer::new(b"short".to_vec(), "app", Duration::from_secs(60)).is_err());
        assert_eq!(
            VerifyingKey::hs256(b"short").unwrap_err(),
            AssertionError::ShortSecret
        );
    }

    #[test]
    fn eddsa_sign_then_verify_with_the_public_key_pem() {
        let s = ed_signer();
        let now = SystemTime::now();
        let t = s
            .sign(&alice(), Some("EX\\admin"), "POST", "/x?y=1", now)
            .unwrap();
        let pem = s.key().public_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        let vk = VerifyingKey::ed25519_from_pem(&pem).unwrap();
        assert_eq!(vk.algorithm(), Algorithm::EdDsa);
        assert_eq!(vk.kid(), s.key().kid());
        assert_eq!(
            vk.kid(),
            key_id(&s.key().ed25519_public_key().unwrap()),
            "kid = SHA-256 of the raw public key"
        );
        let header = URL_SAFE_NO_PAD.decode(&parts(&t)[0]).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(r#"{{"alg":"EdDSA","kid":"{}","typ":"JWT"}}"#, vk.kid())
        );
        let c = verify(&[vk], &t, "app", "POST", "/x?y=1", now, LEEWAY).unwrap();
        assert_eq!(c.sub, "EX\\alice");
        assert_eq!(c.act.as_deref(), Some("EX\\admin"));
        assert_eq!(c.groups, vec!["EX\\Domain Users"]);
        // The signer's own verifying key, and a key set holding both algorithms.
        let both = [hs_key(), s.key().verifying_key()];
        assert!(verify(&both, &t, "app", "POST", "/x?y=1", now, LEEWAY).is_ok());
    }

    #[test]
    fn eddsa_refusals() {
        let s = ed_signer();
        let vk = s.key().verifying_key();
        let keys = std::slice::from_ref(&vk);
        let now = SystemTime::now();
        let t = s.sign(&alice(), None, "GET", "/a", now).unwrap();
        let v = |tok: &str, aud: &str, m: &str, p: &str, at: SystemTime| {
            verify(keys, tok, aud, m, p, at, LEEWAY)
        };
        assert!(v(&t, "app", "GET", "/a", now).is_ok());
        // Tampered payload.
        assert_eq!(
            v(
                &with_claims_edited(&t, "alice", "admin"),
                "app",
                "GET",
                "/a",
                now
            )
            .unwrap_err(),
            AssertionError::BadSignature
        );
        // Tampered signature: one bit.
        let p = parts(&t);
        let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
        sig[10] ^= 1;
        let bad_sig = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            v(&bad_sig, "app", "GET", "/a", now).unwrap_err(),
            AssertionError::BadSignature
        );
        let short_sig = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig[..63]));
        assert_eq!(
            v(&short_sig, "app", "GET", "/a", now).unwrap_err(),
            AssertionError::BadSignature
        );
        // Tampered header: same alg and kid, one more member.
        let header = b64_json(&format!(
            r#"{{"alg":"EdDSA","kid":"{}","typ":"JWT","x":1}}"#,
            vk.kid()
        ));
        let bad_header = format!("{header}.{}.{}", p[1], p[2]);
        assert_eq!(
            v(&bad_header, "app", "GET", "/a", now).unwrap_err(),
            AssertionError::BadSignature
        );
        // Wrong key: another key pair (another kid), and the same token with its kid
        // removed so that the other key is tried.
        let other = ed_signer().key().verifying_key();
        assert!(matches!(
            verify(
                std::slice::from_ref(&other),
                &t,
                "app",
                "GET",
                "/a",
                now,
                LEEWAY
            ),
            Err(AssertionError::UnknownKey { alg: "EdDSA", .. })
        ));
        let no_kid = s
            .key()
            .sign_compact(
                &b64_json(r#"{"alg":"EdDSA","typ":"JWT"}"#),
                &URL_SAFE_NO_PAD.decode(&p[1]).unwrap(),
            )
            .unwrap();
        assert_eq!(
            verify(&[other], &no_kid, "app", "GET", "/a", now, LEEWAY).unwrap_err(),
            AssertionError::BadSignature
        );
        assert!(verify(keys, &no_kid, "app", "GET", "/a", now, LEEWAY).is_ok());
        // Expired, not yet valid, audience, method, path.
        assert!(matches!(
            v(&t, "app", "GET", "/a", now + Duration::from_secs(66)),
            Err(AssertionError::Expired { .. })
        ));
        assert!(v(&t, "app", "GET", "/a", now + Duration::from_secs(64)).is_ok());
        assert!(matches!(
            v(&t, "app", "GET", "/a", now - Duration::from_secs(6)),
            Err(AssertionError::NotYetValid { .. })
        ));
        assert!(matches!(
            v(&t, "other-app", "GET", "/a", now),
            Err(AssertionError::WrongAudience { .. })
        ));
        assert!(matches!(
            v(&t, "app", "POST", "/a", now),
            Err(AssertionError::WrongRequest { .. })
        ));
        assert!(matches!(
            v(&t, "app", "GET", "/b", now),
            Err(AssertionError::WrongRequest { .. })
        ));
        assert!(matches!(
            v(&t, "app", "GET", "/a?x=1", now),
            Err(AssertionError::WrongRequest { .. })
        ));
        // Unknown kid.
        let header = b64_json(r#"{"alg":"EdDSA","kid":"AAAAAAAAAAA","typ":"JWT"}"#);
        let unknown = format!("{header}.{}.{}", p[1], p[2]);
        assert_eq!(
            v(&unknown, "app", "GET", "/a", now).unwrap_err(),
            AssertionError::UnknownKey {
                alg: "EdDSA",
                kid: Some("AAAAAAAAAAA".into())
            }
        );
        // alg none, with and without a signature.
        let none = format!("{}.{}.", b64_json(r#"{"alg":"none"}"#), p[1]);
        assert_eq!(
            v(&none, "app", "GET", "/a", now).unwrap_err(),
            AssertionError::UnsupportedAlgorithm
        );
        let none_sig = format!("{}.{}.{}", b64_json(r#"{"alg":"none"}"#), p[1], p[2]);
        assert_eq!(
            v(&none_sig, "app", "GET", "/a", now).unwrap_err(),
            AssertionError::UnsupportedAlgorithm
        );
        // A critical extension we do not understand, even validly signed.
        let crit_header = b64_json(&format!(
            r#"{{"alg":"EdDSA","kid":"{}","crit":["exp"],"exp":1}}"#,
            vk.kid()
        ));
        let crit = s
            .key()
            .sign_compact(&crit_header, &URL_SAFE_NO_PAD.decode(&p[1]).unwrap())
            .unwrap();
        assert_eq!(
            v(&crit, "app", "GET", "/a", now).unwrap_err(),
            AssertionError::UnsupportedHeader
        );
        // No keys at all.
        assert!(matches!(
            verify(&[], &t, "app", "GET", "/a", now, LEEWAY),
            Err(AssertionError::UnknownKey { .. })
        ));
    }

    #[test]
    fn no_algorithm_confusion() {
        let now = SystemTime::now();
        let ed = ed_signer();
        let ed_vk = ed.key().verifying_key();
        let claims_of = |t: &str| URL_SAFE_NO_PAD.decode(&parts(t)[1]).unwrap();
        let genuine = ed.sign(&alice(), None, "GET", "/", now).unwrap();

        // The classic attack: HS256 keyed with the (public) Ed25519 key, as raw bytes or
        // as the PEM text a backend holds, with or without the Ed25519 key's kid.
        let raw = ed.key().ed25519_public_key().unwrap();
        let pem = ed.key().public_key_pem().unwrap();
        for secret in [raw.to_vec(), pem.into_bytes()] {
            let forger = SigningKey::hs256(secret).unwrap();
            let with_kid = b64_json(&format!(r#"{{"alg":"HS256","kid":"{}"}}"#, ed_vk.kid()));
            let without_kid = b64_json(r#"{"alg":"HS256"}"#);
            // With an HS256 key in the set too, only that key is tried (when the kid
            // does not exclude it), and it refuses the forgery.
            let with_hs_key = [
                AssertionError::UnknownKey {
                    alg: "HS256",
                    kid: Some(ed_vk.kid().to_owned()),
                },
                AssertionError::BadSignature,
            ];
            for (header, mixed) in [with_kid, without_kid].iter().zip(with_hs_key) {
                let forged = forger.sign_compact(header, &claims_of(&genuine)).unwrap();
                assert!(
                    matches!(
                        verify(
                            std::slice::from_ref(&ed_vk),
                            &forged,
                            "app",
                            "GET",
                            "/",
                            now,
                            LEEWAY
                        ),
                        Err(AssertionError::UnknownKey { alg: "HS256", .. })
                    ),
                    "an HS256 token must not verify against an Ed25519 key"
                );
                let both = [ed_vk.clone(), hs_key()];
                assert_eq!(
                    verify(&both, &forged, "app", "GET", "/", now, LEEWAY).unwrap_err(),
                    mixed
                );
            }
        }

        // The other way: an EdDSA token never checks against an HS256 secret, even when
        // it claims the secret's kid.
        let hs = hs_key();
        assert!(matches!(
            verify(
                std::slice::from_ref(&hs),
                &genuine,
                "app",
                "GET",
                "/",
                now,
                LEEWAY
            ),
            Err(AssertionError::UnknownKey { alg: "EdDSA", .. })
        ));
        let header = b64_json(&format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, hs.kid()));
        let relabelled = ed
            .key()
            .sign_compact(&header, &claims_of(&genuine))
            .unwrap();
        assert!(matches!(
            verify(
                std::slice::from_ref(&hs),
                &relabelled,
                "app",
                "GET",
                "/",
                now,
                LEEWAY
            ),
            Err(AssertionError::UnknownKey { alg: "EdDSA", .. })
        ));
        // An HS256 token relabelled EdDSA (its HMAC tag as the "signature").
        let hs_token = Signer::new(SECRET.to_vec(), "app", Duration::from_secs(60))
            .unwrap()
            .sign(&alice(), None, "GET", "/", now)
            .unwrap();
        let p = parts(&hs_token);
        let as_eddsa = format!(
            "{}.{}.{}",
            b64_json(&format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, hs.kid())),
            p[1],
            p[2]
        );
        assert!(matches!(
            verify(&[hs, ed_vk], &as_eddsa, "app", "GET", "/", now, LEEWAY),
            Err(AssertionError::UnknownKey { alg: "EdDSA", .. })
        ));
    }

    #[test]
    fn rfc8037_a4_ed25519_jws() {
        let d = URL_SAFE_NO_PAD.decode(RFC8037_D).unwrap();
        let x: [u8; 32] = URL_SAFE_NO_PAD
            .decode(RFC8037_X)
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(RFC8037_HEADER_B64).unwrap(),
            br#"{"alg":"EdDSA"}"#
        );
        let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x).unwrap();
        let key = SigningKey::from_ed25519_pair(pair);
        // Signing: Ed25519 is deterministic, so the JWS is the RFC's, byte for byte.
        assert_eq!(
            key.sign_compact(RFC8037_HEADER_B64, RFC8037_PAYLOAD)
                .unwrap(),
            RFC8037_JWS
        );
        // Verification (A.5): with the public key only, and the kid-less header.
        let vk = VerifyingKey::ed25519(x);
        assert_eq!(
            verify_signature(std::slice::from_ref(&vk), RFC8037_JWS).unwrap(),
            RFC8037_PAYLOAD
        );
        let mut altered = RFC8037_JWS.to_owned();
        altered.replace_range(25..26, "y");
        assert_eq!(
            verify_signature(&[vk], &altered).unwrap_err(),
            AssertionError::BadSignature
        );
    }

    #[test]
    fn pkcs8_v1_private_key_pem_rfc8410() {
        let key = SigningKey::ed25519_from_pem(RFC8410_PRIVATE_PEM).unwrap();
        assert_eq!(key.algorithm(), Algorithm::EdDsa);
        assert_eq!(key.public_key_pem().unwrap(), RFC8410_PUBLIC_PEM);
        let vk = VerifyingKey::ed25519_from_pem(RFC8410_PUBLIC_PEM).unwrap();
        assert_eq!(vk.kid(), key.kid());
        let s = Signer::with_key(key, "app", Duration::from_secs(60));
        let now = SystemTime::now();
        let t = s.sign(&alice(), None, "GET", "/", now).unwrap();
        assert!(verify(&[vk], &t, "app", "GET", "/", now, LEEWAY).is_ok());
    }

    #[test]
    fn generated_key_pem_round_trips() {
        let new = SigningKey::generate_ed25519().unwrap();
        assert!(new
            .private_key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let der = pem_decode(&new.private_key_pem, "PRIVATE KEY").unwrap();
        assert_eq!(der.len(), 48, "PKCS#8 v1");
        assert!(der.starts_with(&ED25519_PKCS8_V1_PREFIX));
        let again = SigningKey::ed25519_from_pem(&new.private_key_pem).unwrap();
        assert_eq!(again.kid(), new.key.kid());
        assert_eq!(again.public_key_pem().unwrap(), new.public_key_pem);
        assert_ne!(
            SigningKey::generate_ed25519().unwrap().key.kid(),
            new.key.kid()
        );
    }

    #[test]
    fn bad_key_material_is_refused() {
        assert!(matches!(
            SigningKey::ed25519_from_pem("garbage"),
            Err(AssertionError::BadPrivateKey(_))
        ));
        assert!(matches!(
            SigningKey::ed25519_from_pem(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            ),
            Err(AssertionError::BadPrivateKey(m)) if m.contains("encrypted")
        ));
        // A public key where the private key belongs, and the reverse.
        assert!(SigningKey::ed25519_from_pem(RFC8410_PUBLIC_PEM).is_err());
        assert!(VerifyingKey::ed25519_from_pem(RFC8410_PRIVATE_PEM).is_err());
        // An RSA/EC SubjectPublicKeyInfo or a truncated key.
        let der = pem_decode(RFC8410_PUBLIC_PEM, "PUBLIC KEY").unwrap();
        assert!(VerifyingKey::ed25519_from_spki_der(&der[..43]).is_err());
        let mut other_oid = der.clone();
        other_oid[8] = 0x6e; // 1.3.101.110 (X25519)
        assert!(VerifyingKey::ed25519_from_spki_der(&other_oid).is_err());
        assert!(VerifyingKey::ed25519_from_spki_der(&der).is_ok());
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("assertion.key");
        let made = generate_ed25519_key_files(&private).unwrap();
        assert_eq!(made.public_key, dir.path().join("assertion.pub"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&made.public_key) & 0o022, 0, "not writable by others");
        assert_eq!(mode(&made.public_key) & 0o044, 0o044, "readable by all");
        let key = read_ed25519_private_key_file(&private).unwrap();
        let vk = read_ed25519_public_key_file(&made.public_key).unwrap();
        assert_eq!(key.kid(), made.kid);
        assert_eq!(vk.kid(), made.kid);
        // Never overwrite, either file.
        assert!(matches!(
            generate_ed25519_key_files(&private),
            Err(KeyFileError::AlreadyExists { .. })
        ));
        let other = dir.path().join("other.key");
        std::fs::write(dir.path().join("other.pub"), "x").unwrap();
        assert!(matches!(
            generate_ed25519_key_files(&other),
            Err(KeyFileError::AlreadyExists { .. })
        ));
        assert!(
            !other.exists(),
            "no private key left without its public key"
        );
        assert!(matches!(
            generate_ed25519_key_files(&dir.path().join("x.pub")),
            Err(KeyFileError::PrivateKeyNamedPub { .. })
        ));
        // A private key others can read is refused.
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_ed25519_private_key_file(&private),
            Err(KeyFileError::Permissions { .. })
        ));
    }
}
