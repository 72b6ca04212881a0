//! Wire codecs for iwa: no I/O, no unsafe.
//!
//! - [`authz`]: the `Authorization` / `WWW-Authenticate` grammar for the
//!   Negotiate (RFC 4559) and NTLM schemes.
//! - [`der`]: one bounded DER reader (sub-readers cannot run past their
//!   element) and a few writer helpers.
//! - [`spnego`]: SPNEGO (RFC 4178) `NegTokenInit` / `NegTokenResp` and the
//!   RFC 2743 initial-token framing.
//! - [`ldap`]: the LDAP messages of a SASL GSSAPI bind and the SASL security
//!   layer's framing (RFC 4511, RFC 4752, RFC 4422).
//! - [`ntlm`]: NTLM (MS-NLMP) messages, AV_PAIR lists, the NTLMv2 math and
//!   an NTLMv2-only server handshake state machine.
//! - [`pac`]: the Kerberos PAC (MS-PAC): `PACTYPE` and its buffers, and the
//!   NDR `KERB_VALIDATION_INFO` with the user's groups (the value of MIT's
//!   `urn:mspac:logon-info` name attribute).
//! - [`sid`]: Windows security identifiers: binary, NDR and `S-1-…` forms.
//!
//! Every parser takes `&[u8]`, bounds its input up front, returns a typed value
//! or a typed `#[non_exhaustive]` error, never panics, and is fuzzed (`fuzz/`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authz;
pub mod der;
pub mod krb5;
pub mod ldap;
mod le;
pub mod ntlm;
pub mod pac;
pub mod sid;
pub mod spnego;
