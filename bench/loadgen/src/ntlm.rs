//! Client side of NTLM (MS-NLMP) with NTLMv2 responses, just enough to drive a
//! NEGOTIATE → CHALLENGE → AUTHENTICATE handshake against a server.

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;

type HmacMd5 = Hmac<Md5>;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

pub const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
pub const REQUEST_TARGET: u32 = 0x0000_0004;
pub const NEGOTIATE_SIGN: u32 = 0x0000_0010;
pub const NEGOTIATE_NTLM: u32 = 0x0000_0200;
pub const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
pub const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
pub const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
pub const NEGOTIATE_VERSION: u32 = 0x0200_0000;
pub const NEGOTIATE_128: u32 = 0x2000_0000;
pub const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
pub const NEGOTIATE_56: u32 = 0x8000_0000;

/// Flags this client asks for.
pub const CLIENT_FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_SIGN
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_VERSION
    | NEGOTIATE_128
    | NEGOTIATE_KEY_EXCH
    | NEGOTIATE_56;

const AV_EOL: u16 = 0;
const AV_TIMESTAMP: u16 = 7;
const AV_FLAGS: u16 = 6;
const AV_FLAG_MIC_PRESENT: u32 = 0x2;

/// Windows 10 build 19041, NTLM revision 15 (only informational).
const VERSION: [u8; 8] = [10, 0, 0x61, 0x4a, 0, 0, 0, 15];

#[derive(Debug, PartialEq, Eq)]
pub enum NtlmError {
    NotChallenge,
    Truncated,
}

impl std::fmt::Display for NtlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NtlmError::NotChallenge => f.write_str("not an NTLM CHALLENGE message"),
            NtlmError::Truncated => f.write_str("truncated NTLM CHALLENGE message"),
        }
    }
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacMd5::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NT hash: MD4(UTF-16LE(password)).
pub fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

/// NTOWFv2 = HMAC-MD5(NT hash, UTF-16LE(UPPER(user) ‖ domain)).
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let id = utf16le(&(user.to_uppercase() + domain));
    hmac_md5(&nt_hash(password), &[&id])
}

/// The parts of an NTLMv2 computation.
pub struct V2Response {
    pub nt_response: Vec<u8>,
    pub lm_response: Vec<u8>,
    pub nt_proof_str: [u8; 16],
    pub session_base_key: [u8; 16],
}

/// NTLMv2 responses (MS-NLMP 3.3.2) for the given key, challenges, time and AV pairs
/// (`target_info` as it goes into the temp blob, ending with MsvAvEOL).
pub fn v2_response(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
    time: u64,
    target_info: &[u8],
) -> V2Response {
    let mut temp = Vec::with_capacity(28 + target_info.len() + 4);
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    temp.extend_from_slice(&time.to_le_bytes());
    temp.extend_from_slice(client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(target_info);
    temp.extend_from_slice(&[0; 4]);
    let nt_proof_str = hmac_md5(response_key, &[server_challenge, &temp]);
    let mut nt_response = nt_proof_str.to_vec();
    nt_response.extend_from_slice(&temp);
    let mut lm_response = hmac_md5(response_key, &[server_challenge, client_challenge]).to_vec();
    lm_response.extend_from_slice(client_challenge);
    let session_base_key = hmac_md5(response_key, &[&nt_proof_str]);
    V2Response {
        nt_response,
        lm_response,
        nt_proof_str,
        session_base_key,
    }
}

/// NEGOTIATE_MESSAGE with no domain or workstation supplied.
pub fn negotiate() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    m.extend_from_slice(&[0; 16]); // DomainNameFields, WorkstationFields
    m.extend_from_slice(&VERSION);
    m
}

pub struct Challenge {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    pub target_info: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, NtlmError> {
    let s = b.get(at..at + 2).ok_or(NtlmError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, NtlmError> {
    let s = b.get(at..at + 4).ok_or(NtlmError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn parse_challenge(msg: &[u8]) -> Result<Challenge, NtlmError> {
    if msg.get(..8) != Some(&SIGNATURE[..]) || u32_at(msg, 8)? != 2 {
        return Err(NtlmError::NotChallenge);
    }
    let flags = u32_at(msg, 20)?;
    let mut server_challenge = [0u8; 8];
    server_challenge.copy_from_slice(msg.get(24..32).ok_or(NtlmError::Truncated)?);
    let ti_len = usize::from(u16_at(msg, 40)?);
    let ti_off = u32_at(msg, 44)? as usize;
    let target_info = if ti_len == 0 {
        Vec::new()
    } else {
        msg.get(ti_off..ti_off + ti_len)
            .ok_or(NtlmError::Truncated)?
            .to_vec()
    };
    Ok(Challenge {
        flags,
        server_challenge,
        target_info,
    })
}

/// AV pairs of `target_info` without the terminating MsvAvEOL, and the timestamp if any.
fn split_av_pairs(ti: &[u8]) -> (Vec<u8>, Option<u64>) {
    let mut out = Vec::with_capacity(ti.len() + 8);
    let mut ts = None;
    let mut pos = 0;
    while let (Ok(id), Ok(len)) = (u16_at(ti, pos), u16_at(ti, pos + 2)) {
        let len = usize::from(len);
        let Some(value) = ti.get(pos + 4..pos + 4 + len) else {
            break;
        };
        if id == AV_EOL {
            break;
        }
        if id == AV_TIMESTAMP && len == 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(value);
            ts = Some(u64::from_le_bytes(b));
        }
        if id != AV_FLAGS {
            out.extend_from_slice(&ti[pos..pos + 4 + len]);
        }
        pos += 4 + len;
    }
    (out, ts)
}

/// RC4, only for the key-exchange step (EncryptedRandomSessionKey).
fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut j = 0u8;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|b| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[usize::from(i)]);
            s.swap(usize::from(i), usize::from(j));
            b ^ s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))]
        })
        .collect()
}

/// Current time as a Windows FILETIME (100 ns since 1601-01-01).
fn filetime_now() -> u64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (unix.as_nanos() / 100) as u64 + 116_444_736_000_000_000
}

pub struct Credentials {
    pub user: String,
    pub password: String,
    pub domain: String,
    pub workstation: String,
}

/// AUTHENTICATE_MESSAGE answering `challenge_msg`, with a MIC when the server sent a
/// timestamp. `negotiate_msg` is the exact NEGOTIATE we sent (MIC covers it).
/// `random` supplies the client challenge and, with key exchange, the session key.
pub fn authenticate(
    creds: &Credentials,
    negotiate_msg: &[u8],
    challenge_msg: &[u8],
    random: &mut impl FnMut() -> u64,
) -> Result<Vec<u8>, NtlmError> {
    let ch = parse_challenge(challenge_msg)?;
    let flags = (ch.flags & CLIENT_FLAGS) | (ch.flags & NEGOTIATE_TARGET_INFO);
    let (mut av, ts) = split_av_pairs(&ch.target_info);
    let with_mic = ts.is_some();
    if with_mic {
        av.extend_from_slice(&AV_FLAGS.to_le_bytes());
        av.extend_from_slice(&4u16.to_le_bytes());
        av.extend_from_slice(&AV_FLAG_MIC_PRESENT.to_le_bytes());
    }
    av.extend_from_slice(&[0; 4]); // MsvAvEOL
    let client_challenge = random().to_le_bytes();
    let key = ntowf_v2(&creds.password, &creds.user, &creds.domain);
    let r = v2_response(
        &key,
        &ch.server_challenge,
        &client_challenge,
        ts.unwrap_or_else(filetime_now),
        &av,
    );
    let lm = if with_mic {
        vec![0u8; 24]
    } else {
        r.lm_response
    };
    let (exported_key, enc_key) = if flags & NEGOTIATE_KEY_EXCH != 0 {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&random().to_le_bytes());
        k[8..].copy_from_slice(&random().to_le_bytes());
        (k, rc4(&r.session_base_key, &k))
    } else {
        (r.session_base_key, Vec::new())
    };

    let domain = utf16le(&creds.domain);
    let user = utf16le(&creds.user);
    let ws = utf16le(&creds.workstation);
    const HEADER: usize = 88;
    let mut msg = Vec::with_capacity(
        HEADER + lm.len() + r.nt_response.len() + domain.len() + user.len() + ws.len() + 16,
    );
    msg.extend_from_slice(SIGNATURE);
    msg.extend_from_slice(&3u32.to_le_bytes());
    let fields: [&[u8]; 6] = [&lm, &r.nt_response, &domain, &user, &ws, &enc_key];
    let mut offset = HEADER;
    for f in fields {
        let len = f.len() as u16;
        msg.extend_from_slice(&len.to_le_bytes());
        msg.extend_from_slice(&len.to_le_bytes());
        msg.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += f.len();
    }
    msg.extend_from_slice(&flags.to_le_bytes());
    msg.extend_from_slice(&VERSION);
    msg.extend_from_slice(&[0; 16]); // MIC, filled in below
    for f in fields {
        msg.extend_from_slice(f);
    }
    if with_mic {
        let mic = hmac_md5(&exported_key, &[negotiate_msg, challenge_msg, &msg]);
        msg[72..88].copy_from_slice(&mic);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// MS-NLMP §4.2.4 (NTLMv2 authentication) test vectors.
    #[test]
    fn ms_nlmp_4_2_4_ntlmv2() {
        let key = ntowf_v2("Password", "User", "Domain");
        assert_eq!(key.to_vec(), hex("0c868a403bfd7a93a3001ef22ef02e3f"));
        // AV pairs of the CHALLENGE in §4.2.4.3: NbDomainName "Domain",
        // NbComputerName "Server", MsvAvEOL.
        let av = hex("02000c0044006f006d00610069006e00 01000c005300650072007600650072000000 0000");
        let server = hex("0123456789abcdef");
        let client = hex("aaaaaaaaaaaaaaaa");
        let r = v2_response(
            &key,
            server.as_slice().try_into().unwrap(),
            client.as_slice().try_into().unwrap(),
            0,
            &av,
        );
        assert_eq!(
            r.lm_response,
            hex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
        );
        assert_eq!(
            r.nt_proof_str.to_vec(),
            hex("68cd0ab851e51c96aabc927bebef6a1c")
        );
        assert_eq!(
            r.session_base_key.to_vec(),
            hex("8de40ccadbc14a82f15cb0ad0de95ca3")
        );
        // §4.2.4.2.3 EncryptedRandomSessionKey = RC4(KeyExchangeKey, RandomSessionKey 0x55..)
        let enc = rc4(&r.session_base_key, &[0x55; 16]);
        assert_eq!(enc, hex("c5dad2544fc9799094ce1ce90bc9d03e"));
    }

    #[test]
    fn nt_hash_known_value() {
        // MS-NLMP §4.2.2.1.2 NTOWFv1("Password").
        assert_eq!(
            nt_hash("Password").to_vec(),
            hex("a4f49c406510bdcab6824ee7c30fd852")
        );
    }

    #[test]
    fn authenticate_roundtrip_layout() {
        // A CHALLENGE with a timestamp, so a MIC is computed.
        let mut ti = hex("02000c0044006f006d00610069006e00");
        ti.extend_from_slice(&hex("07000800"));
        ti.extend_from_slice(&42u64.to_le_bytes());
        ti.extend_from_slice(&[0; 4]);
        let mut ch = Vec::new();
        ch.extend_from_slice(SIGNATURE);
        ch.extend_from_slice(&2u32.to_le_bytes());
        ch.extend_from_slice(&[0, 0, 0, 0, 56, 0, 0, 0]); // empty target name
        ch.extend_from_slice(&(CLIENT_FLAGS | NEGOTIATE_TARGET_INFO).to_le_bytes());
        ch.extend_from_slice(&hex("0123456789abcdef"));
        ch.extend_from_slice(&[0; 8]);
        let l = ti.len() as u16;
        ch.extend_from_slice(&l.to_le_bytes());
        ch.extend_from_slice(&l.to_le_bytes());
        ch.extend_from_slice(&56u32.to_le_bytes());
        ch.extend_from_slice(&VERSION);
        ch.extend_from_slice(&ti);
        let creds = Credentials {
            user: "User".into(),
            password: "Password".into(),
            domain: "Domain".into(),
            workstation: "WS".into(),
        };
        let neg = negotiate();
        let mut n = 0u64;
        let msg = authenticate(&creds, &neg, &ch, &mut || {
            n += 1;
            n
        })
        .unwrap();
        assert_eq!(&msg[..8], SIGNATURE);
        assert_eq!(u32_at(&msg, 8).unwrap(), 3);
        // LM response is 24 zero bytes when a timestamp is present.
        assert_eq!(u16_at(&msg, 12).unwrap(), 24);
        let nt_len = usize::from(u16_at(&msg, 20).unwrap());
        let nt_off = u32_at(&msg, 24).unwrap() as usize;
        let nt = &msg[nt_off..nt_off + nt_len];
        // Timestamp from the server is used in the blob.
        assert_eq!(&nt[24..32], &42u64.to_le_bytes());
        assert_ne!(&msg[72..88], &[0u8; 16]);
        assert!(parse_challenge(&neg).is_err());
    }
}
