//! NTLMv2 key and response math (MS-NLMP §3.3.2, §3.4.5) and the channel
//! binding hash. Pure functions over bytes; comparisons of secrets are
//! constant-time ([`ct_eq`]).

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use rc4::{consts::U16, KeyInit, Rc4, StreamCipher};
use subtle::ConstantTimeEq;

use super::codec::utf16le;

type HmacMd5 = Hmac<Md5>;

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
    let Ok(mut mac) = <HmacMd5 as Mac>::new_from_slice(key) else {
        return [0; 16];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv1 / the NT hash: MD4 of the UTF-16LE password. What the `local`
/// validator stores and what a domain controller holds.
pub fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

/// Upper-cases a user name the way Windows does for NTOWFv2: one character
/// to one character (`RtlUpcaseUnicodeString`); characters whose upper case
/// is several characters (e.g. `ß`) are left alone.
fn upcase_user(user: &str) -> String {
    user.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// NTOWFv2 = HMAC-MD5(NT hash, UNICODE(Uppercase(user) ‖ domain)); the
/// domain keeps its case. This is ResponseKeyNT (and ResponseKeyLM).
pub fn nt_owf_v2(nt_hash: &[u8; 16], user: &str, domain: &str) -> [u8; 16] {
    let mut identity = upcase_user(user);
    identity.push_str(domain);
    hmac_md5(nt_hash, &[&utf16le(&identity)])
}

/// NTProofStr = HMAC-MD5(ResponseKeyNT, ServerChallenge ‖ temp), where
/// `temp` is the NTLMv2 response after its first 16 bytes.
pub fn nt_proof_str(
    response_key_nt: &[u8; 16],
    server_challenge: &[u8; 8],
    temp: &[u8],
) -> [u8; 16] {
    hmac_md5(response_key_nt, &[server_challenge, temp])
}

/// SessionBaseKey = HMAC-MD5(ResponseKeyNT, NTProofStr). For NTLMv2 this is
/// also the KeyExchangeKey.
pub fn session_base_key(response_key_nt: &[u8; 16], nt_proof_str: &[u8; 16]) -> [u8; 16] {
    hmac_md5(response_key_nt, &[nt_proof_str])
}

/// The LMv2 response: HMAC-MD5(ResponseKeyLM, ServerChallenge ‖
/// ClientChallenge) ‖ ClientChallenge.
pub fn lmv2_response(
    response_key_lm: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
) -> [u8; 24] {
    let mac = hmac_md5(response_key_lm, &[server_challenge, client_challenge]);
    let mut out = [0u8; 24];
    let (head, tail) = out.split_at_mut(16);
    head.copy_from_slice(&mac);
    tail.copy_from_slice(client_challenge);
    out
}

/// The `temp` of an NTLMv2 response (the NTLMv2_CLIENT_CHALLENGE plus the
/// trailing `Z(4)`): RespType 1, HiRespType 1, `Z(6)`, the timestamp, the
/// client challenge, `Z(4)`, the encoded AV pairs (with their MsvAvEOL),
/// `Z(4)`. What a client builds; the server never rebuilds it, it hashes the
/// bytes it received.
pub fn ntlmv2_temp(timestamp: u64, client_challenge: &[u8; 8], av_pairs: &[u8]) -> Vec<u8> {
    let mut temp = Vec::with_capacity(32usize.saturating_add(av_pairs.len()));
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    temp.extend_from_slice(&timestamp.to_le_bytes());
    temp.extend_from_slice(client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(av_pairs);
    temp.extend_from_slice(&[0; 4]);
    temp
}

/// RC4 with a 16-byte key over 16 bytes: encrypts a client's random session
/// key, and decrypts an EncryptedRandomSessionKey (RC4 is its own inverse).
pub fn rc4_16(key: &[u8; 16], data: &[u8; 16]) -> [u8; 16] {
    let mut out = *data;
    let mut cipher = Rc4::<U16>::new(key.into());
    cipher.apply_keystream(&mut out);
    out
}

/// MIC = HMAC-MD5(ExportedSessionKey, NEGOTIATE ‖ CHALLENGE ‖
/// AUTHENTICATE), the AUTHENTICATE message with its MIC field zeroed.
pub fn mic(
    exported_session_key: &[u8; 16],
    negotiate: &[u8],
    challenge: &[u8],
    authenticate_mic_zeroed: &[u8],
) -> [u8; 16] {
    hmac_md5(
        exported_session_key,
        &[negotiate, challenge, authenticate_mic_zeroed],
    )
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// MD5 of a `gss_channel_bindings_struct` as MS-NLMP §2.2.2.1 (for
/// `MsvAvChannelBindings`) and RFC 4121 §4.1.1.2 lay it out: each field
/// little-endian — initiator address type (u32), initiator address length
/// (u32) and bytes, acceptor address type (u32), acceptor address length
/// (u32) and bytes, application data length (u32) and bytes.
pub fn gss_channel_bindings_hash(
    initiator_addrtype: u32,
    initiator_address: &[u8],
    acceptor_addrtype: u32,
    acceptor_address: &[u8],
    application_data: &[u8],
) -> [u8; 16] {
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes();
    let mut h = Md5::new();
    h.update(initiator_addrtype.to_le_bytes());
    h.update(len(initiator_address));
    h.update(initiator_address);
    h.update(acceptor_addrtype.to_le_bytes());
    h.update(len(acceptor_address));
    h.update(acceptor_address);
    h.update(len(application_data));
    h.update(application_data);
    h.finalize().into()
}

/// The `MsvAvChannelBindings` value a client computes for a TLS connection
/// with RFC 5929 `tls-server-end-point` binding: the addresses empty (type
/// 0), the application data `"tls-server-end-point:"` followed by
/// `cert_hash`, the hash of the server certificate (SHA-256 for SHA-1/MD5/
/// SHA-256-signed certificates, else the signature's hash; the caller
/// computes it).
pub fn tls_server_end_point_channel_bindings(cert_hash: &[u8]) -> [u8; 16] {
    let mut data = Vec::with_capacity(21usize.saturating_add(cert_hash.len()));
    data.extend_from_slice(b"tls-server-end-point:");
    data.extend_from_slice(cert_hash);
    gss_channel_bindings_hash(0, &[], 0, &[], &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_md5_rfc2202_case_2() {
        let got = hmac_md5(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            got,
            [
                0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d,
                0xb7, 0x38
            ]
        );
    }

    #[test]
    fn upcase_is_one_to_one() {
        assert_eq!(upcase_user("user"), "USER");
        assert_eq!(upcase_user("straße"), "STRAßE");
        assert_eq!(upcase_user("élodie"), "ÉLODIE");
    }

    #[test]
    fn rc4_is_its_own_inverse() {
        // RC4 is the keystream XOR: encrypting twice gives the input back.
        let key = [7u8; 16];
        let data = [0x55u8; 16];
        assert_eq!(rc4_16(&key, &rc4_16(&key, &data)), data);
    }
}
