//! The outer, unencrypted parts of a Kerberos AP-REQ inside a GSS-API initial context
//! token (RFC 4121 §4.1, RFC 4120 §5.5.1). Nothing is decrypted here; this is used
//! (a) to key replay detection on the encrypted authenticator, as MIT's replay cache
//! does, and (b) to say in logs which service principal, key version and enctype a
//! refused ticket was for.

use crate::der::{DerError, Reader, Tag};

use crate::spnego::oids::{KERBEROS as KRB5_OID, MS_KERBEROS as MS_KRB5_OID};

/// GSS token id of a KRB_AP_REQ (RFC 4121 §4.1).
const TOK_ID_AP_REQ: [u8; 2] = [0x01, 0x00];
/// `[APPLICATION 14]` constructed: AP-REQ.
const AP_REQ: Tag = Tag(0x6e);
/// `[APPLICATION 1]` constructed: Ticket.
const TICKET: Tag = Tag(0x61);
/// Kerberos message type of an AP-REQ.
const KRB_AP_REQ: i64 = 14;

/// Why a Kerberos token was rejected before it reached GSSAPI.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Krb5Error {
    /// The DER structure is malformed.
    #[error("not a GSS-API Kerberos token: {0}")]
    Der(#[from] DerError),
    /// The framing names another mechanism.
    #[error("GSS-API token is for mechanism other than Kerberos")]
    NotKerberos,
    /// The token is not the first (AP-REQ) token.
    #[error("Kerberos GSS token id {0:02x}{1:02x} is not an AP-REQ (01 00)")]
    NotApReq(u8, u8),
    /// The token ends before its token id.
    #[error("Kerberos token is too short to hold a token id")]
    MissingTokenId,
    /// The message type field is not 14.
    #[error("Kerberos message type {0} is not AP-REQ (14)")]
    WrongMessageType(i64),
    /// An INTEGER is empty or longer than 8 octets.
    #[error("INTEGER out of range in the AP-REQ")]
    BadInteger,
}

/// What an AP-REQ says about itself in clear text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApReqInfo<'a> {
    /// The ticket's realm (the service's realm).
    pub realm: &'a [u8],
    /// The service principal's name components, e.g. `["HTTP", "web.example.test"]`.
    pub sname: Vec<&'a [u8]>,
    /// Encryption type of the ticket (the service key's enctype).
    pub ticket_etype: i64,
    /// Key version number of the service key, when the client sent it.
    pub ticket_kvno: Option<i64>,
    /// The encrypted authenticator's ciphertext: unique per authentication.
    pub authenticator_cipher: &'a [u8],
}

impl ApReqInfo<'_> {
    /// `HTTP/web.example.test@EXAMPLE.TEST`, lossily decoded for logs.
    pub fn service_principal(&self) -> String {
        let parts: Vec<String> = self
            .sname
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "{}@{}",
            parts.join("/"),
            String::from_utf8_lossy(self.realm)
        )
    }
}

fn integer(r: &mut Reader<'_>, n: u8) -> Result<i64, Krb5Error> {
    let el = r.read_explicit(n, Tag::INTEGER)?;
    let c = el.contents();
    if c.is_empty() || c.len() > 8 {
        return Err(Krb5Error::BadInteger);
    }
    // Two's complement, big-endian, sign-extended from the first octet.
    let mut v: i64 = if c.first().is_some_and(|b| b & 0x80 != 0) {
        -1
    } else {
        0
    };
    for &b in c {
        v = (v << 8) | i64::from(b);
    }
    Ok(v)
}

/// EncryptedData ::= SEQUENCE { etype [0] Int32, kvno [1] UInt32 OPTIONAL, cipher [2] OCTET STRING }
fn encrypted_data<'a>(r: &mut Reader<'a>) -> Result<(i64, Option<i64>, &'a [u8]), Krb5Error> {
    let mut seq = r.read_nested(Tag::SEQUENCE)?;
    let etype = integer(&mut seq, 0)?;
    let kvno = if seq.peek_tag() == Some(Tag::context(1)) {
        Some(integer(&mut seq, 1)?)
    } else {
        None
    };
    let cipher = seq.read_explicit(2, Tag::OCTET_STRING)?.contents();
    seq.expect_end()?;
    Ok((etype, kvno, cipher))
}

/// Parses a GSS-API Kerberos initial context token (`60 .. 06 09 <krb5 oid> 01 00
/// <AP-REQ>`) down to the parts that are not encrypted.
pub fn parse_initial_context_token(token: &[u8]) -> Result<ApReqInfo<'_>, Krb5Error> {
    let mut outer = Reader::new(token);
    let mut framed = outer.read_nested(Tag::APPLICATION_0)?;
    outer.expect_end()?;
    let oid = framed.read_oid()?;
    if oid != KRB5_OID && oid != MS_KRB5_OID {
        return Err(Krb5Error::NotKerberos);
    }
    let tok_id = framed.take(2).map_err(|_| Krb5Error::MissingTokenId)?;
    if let [a, b] = *tok_id {
        if [a, b] != TOK_ID_AP_REQ {
            return Err(Krb5Error::NotApReq(a, b));
        }
    }
    let mut ap = framed.read_nested(AP_REQ)?;
    framed.expect_end()?;
    let mut seq = ap.read_nested(Tag::SEQUENCE)?;
    ap.expect_end()?;
    let _pvno = integer(&mut seq, 0)?;
    let msg_type = integer(&mut seq, 1)?;
    if msg_type != KRB_AP_REQ {
        return Err(Krb5Error::WrongMessageType(msg_type));
    }
    let _ap_options = seq.read_explicit(2, Tag::BIT_STRING)?;
    // ticket [3] Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno [0], realm [1], sname [2], enc-part [3] }
    let mut t3 = seq.read_nested(Tag::context(3))?;
    let mut tapp = t3.read_nested(TICKET)?;
    t3.expect_end()?;
    let mut ticket = tapp.read_nested(Tag::SEQUENCE)?;
    tapp.expect_end()?;
    let _tkt_vno = integer(&mut ticket, 0)?;
    // Realm ::= GeneralString (0x1b)
    let realm = ticket.read_explicit(1, Tag(0x1b))?.contents();
    // PrincipalName ::= SEQUENCE { name-type [0] Int32, name-string [1] SEQUENCE OF GeneralString }
    let mut sname_wrap = ticket.read_nested(Tag::context(2))?;
    let mut pn = sname_wrap.read_nested(Tag::SEQUENCE)?;
    sname_wrap.expect_end()?;
    let _name_type = integer(&mut pn, 0)?;
    let mut names_wrap = pn.read_nested(Tag::context(1))?;
    let mut names = names_wrap.read_nested(Tag::SEQUENCE)?;
    let mut sname = Vec::new();
    while !names.is_empty() {
        // A principal name has a handful of components; 16 bounds a hostile list.
        if sname.len() >= 16 {
            return Err(Krb5Error::Der(DerError::TrailingData {
                len: names.remaining(),
            }));
        }
        sname.push(names.read_expected(Tag(0x1b))?.contents());
    }
    let mut enc = ticket.read_nested(Tag::context(3))?;
    let (ticket_etype, ticket_kvno, _) = encrypted_data(&mut enc)?;
    // authenticator [4] EncryptedData
    let mut a4 = seq.read_nested(Tag::context(4))?;
    let (_, _, authenticator_cipher) = encrypted_data(&mut a4)?;
    Ok(ApReqInfo {
        realm,
        sname,
        ticket_etype,
        ticket_kvno,
        authenticator_cipher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = content.len();
        if n < 0x80 {
            v.push(n as u8);
        } else if n < 0x100 {
            v.extend([0x81, n as u8]);
        } else {
            v.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend_from_slice(content);
        v
    }
    fn ctx(n: u8, content: &[u8]) -> Vec<u8> {
        tlv(0xa0 | n, content)
    }
    fn int(v: u8) -> Vec<u8> {
        tlv(0x02, &[v])
    }
    fn enc_data(etype: u8, kvno: Option<u8>, cipher: &[u8]) -> Vec<u8> {
        let mut s = ctx(0, &int(etype));
        if let Some(k) = kvno {
            s.extend(ctx(1, &int(k)));
        }
        s.extend(ctx(2, &tlv(0x04, cipher)));
        tlv(0x30, &s)
    }

    /// Builds a structurally valid Kerberos GSS token (RFC 4120 §5.5.1 layout).
    fn token(cipher: &[u8]) -> Vec<u8> {
        let mut names = tlv(0x1b, b"HTTP");
        names.extend(tlv(0x1b, b"localhost"));
        let mut pn = ctx(0, &int(2));
        pn.extend(ctx(1, &tlv(0x30, &names)));
        let mut t = ctx(0, &int(5));
        t.extend(ctx(1, &tlv(0x1b, b"IWA.TEST")));
        t.extend(ctx(2, &tlv(0x30, &pn)));
        t.extend(ctx(3, &enc_data(18, Some(2), &[0xaa; 40])));
        let ticket = tlv(0x61, &tlv(0x30, &t));
        let mut ap = ctx(0, &int(5));
        ap.extend(ctx(1, &int(14)));
        ap.extend(ctx(2, &tlv(0x03, &[0, 0x20, 0, 0, 0])));
        ap.extend(ctx(3, &ticket));
        ap.extend(ctx(4, &enc_data(18, None, cipher)));
        let ap_req = tlv(0x6e, &tlv(0x30, &ap));
        let mut inner = tlv(0x06, KRB5_OID);
        inner.extend([1, 0]);
        inner.extend(ap_req);
        tlv(0x60, &inner)
    }

    #[test]
    fn parses_the_clear_parts() {
        let tok = token(b"authenticator-ciphertext");
        let info = parse_initial_context_token(&tok).unwrap();
        assert_eq!(info.service_principal(), "HTTP/localhost@IWA.TEST");
        assert_eq!(info.ticket_etype, 18);
        assert_eq!(info.ticket_kvno, Some(2));
        assert_eq!(info.authenticator_cipher, b"authenticator-ciphertext");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let tok = token(&[7; 100]);
        for cut in 0..tok.len() {
            assert!(
                parse_initial_context_token(&tok[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn wrong_token_id_and_mech() {
        let oid_at = |t: &[u8]| {
            t.windows(KRB5_OID.len())
                .position(|w| w == KRB5_OID)
                .unwrap()
        };
        let mut tok = token(b"x");
        let pos = oid_at(&tok) + KRB5_OID.len(); // the token id follows the OID
        tok[pos] = 2;
        assert_eq!(
            parse_initial_context_token(&tok),
            Err(Krb5Error::NotApReq(2, 0))
        );
        let mut tok = token(b"x");
        let pos = oid_at(&tok) + KRB5_OID.len() - 1;
        tok[pos] ^= 1; // last byte of the OID
        assert_eq!(
            parse_initial_context_token(&tok),
            Err(Krb5Error::NotKerberos)
        );
    }
}
