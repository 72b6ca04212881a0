//! NTLMv2 message signatures with extended session security (MS-NLMP §3.4.4.2,
//! §3.4.5.2, §3.4.5.3). The gateway needs them for one thing: the SPNEGO
//! `mechListMIC` when NTLM is wrapped in `Negotiate` (RFC 4178 §5, MS-SPNG
//! §3.1.5.1), which both sides compute over the DER `mechTypes` list with the
//! first sequence number of their direction.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rc4::{consts::U16, KeyInit, Rc4, StreamCipher};

use super::crypto::ct_eq;
use super::NegotiateFlags;

const CLIENT_SIGN: &[u8] = b"session key to client-to-server signing key magic constant\0";
const SERVER_SIGN: &[u8] = b"session key to server-to-client signing key magic constant\0";
const CLIENT_SEAL: &[u8] = b"session key to client-to-server sealing key magic constant\0";
const SERVER_SEAL: &[u8] = b"session key to server-to-client sealing key magic constant\0";

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client (initiator) to server (acceptor).
    ClientToServer,
    /// Server to client.
    ServerToClient,
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SIGNKEY (§3.4.5.2) for extended session security.
pub fn sign_key(exported_session_key: &[u8; 16], dir: Direction) -> [u8; 16] {
    let magic = match dir {
        Direction::ClientToServer => CLIENT_SIGN,
        Direction::ServerToClient => SERVER_SIGN,
    };
    md5(&[exported_session_key, magic])
}

/// SEALKEY (§3.4.5.3) for extended session security: the key is cut to 40 or
/// 56 bits unless NEGOTIATE_128 (or NEGOTIATE_56) was negotiated.
pub fn seal_key(
    exported_session_key: &[u8; 16],
    flags: NegotiateFlags,
    dir: Direction,
) -> [u8; 16] {
    let magic = match dir {
        Direction::ClientToServer => CLIENT_SEAL,
        Direction::ServerToClient => SERVER_SEAL,
    };
    let cut = if flags.contains(NegotiateFlags::NEGOTIATE_128) {
        16
    } else if flags.contains(NegotiateFlags::NEGOTIATE_56) {
        7
    } else {
        5
    };
    let key = exported_session_key
        .get(..cut)
        .unwrap_or(exported_session_key);
    md5(&[key, magic])
}

/// One direction's signing state: its keys, RC4 handle and sequence number.
pub struct Signer {
    sign_key: [u8; 16],
    seal: Option<Rc4<U16>>,
    seq: u32,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The state for `dir` after a handshake that negotiated `flags` and
    /// produced `exported_session_key`. The checksum is RC4-sealed when
    /// KEY_EXCH was negotiated (§3.4.4.2).
    pub fn new(exported_session_key: &[u8; 16], flags: NegotiateFlags, dir: Direction) -> Self {
        let seal = flags
            .contains(NegotiateFlags::KEY_EXCH)
            .then(|| Rc4::<U16>::new(&seal_key(exported_session_key, flags, dir).into()));
        Signer {
            sign_key: sign_key(exported_session_key, dir),
            seal,
            seq: 0,
        }
    }

    /// Encrypts `data` with this direction's RC4 handle (sealing; used by the
    /// spec's examples, where sealing precedes the signature).
    pub fn seal_in_place(&mut self, data: &mut [u8]) {
        if let Some(rc4) = &mut self.seal {
            rc4.apply_keystream(data);
        }
    }

    /// The 16-byte NTLMSSP_MESSAGE_SIGNATURE of `message` (§3.4.4.2), which
    /// advances the sequence number and the RC4 handle.
    pub fn sign(&mut self, message: &[u8]) -> [u8; 16] {
        let seq = self.seq.to_le_bytes();
        self.seq = self.seq.wrapping_add(1);
        let mut checksum = [0u8; 8];
        if let Ok(mut mac) = <Hmac<Md5> as Mac>::new_from_slice(&self.sign_key) {
            mac.update(&seq);
            mac.update(message);
            let full: [u8; 16] = mac.finalize().into_bytes().into();
            checksum.copy_from_slice(&full[..8]);
        }
        if let Some(rc4) = &mut self.seal {
            rc4.apply_keystream(&mut checksum);
        }
        let mut sig = [0u8; 16];
        sig[..4].copy_from_slice(&1u32.to_le_bytes());
        sig[4..12].copy_from_slice(&checksum);
        sig[12..].copy_from_slice(&seq);
        sig
    }

    /// Verifies a peer's signature over `message` in constant time.
    pub fn verify(&mut self, message: &[u8], signature: &[u8]) -> bool {
        let expected = self.sign(message);
        ct_eq(&expected, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// MS-NLMP §4.2.4.4 (GSS_WrapEx with NTLMv2): RandomSessionKey 55×16, flags
    /// of §4.2.4 (KEY_EXCH, 56, 128, ESS, ...), client-to-server, seq 0.
    #[test]
    fn ms_nlmp_4_2_4_4_keys_and_signature() {
        let key = [0x55u8; 16];
        let flags = NegotiateFlags(0xe28a_8233);
        assert_eq!(
            seal_key(&key, flags, Direction::ClientToServer).to_vec(),
            hex("59 f6 00 97 3c c4 96 0a 25 48 0a 7c 19 6e 4c 58")
        );
        assert_eq!(
            sign_key(&key, Direction::ClientToServer).to_vec(),
            hex("47 88 dc 86 1b 47 82 f3 5d 43 fd 98 fe 1a 2d 39")
        );
        let mut s = Signer::new(&key, flags, Direction::ClientToServer);
        let plain = hex("50 00 6c 00 61 00 69 00 6e 00 74 00 65 00 78 00 74 00");
        let mut sealed = plain.clone();
        s.seal_in_place(&mut sealed);
        assert_eq!(
            sealed,
            hex("54 e5 01 65 bf 19 36 dc 99 60 20 c1 81 1b 0f 06 fb 5f")
        );
        // The signature is over the plaintext; the handle continues after sealing.
        let sig = s.sign(&plain);
        assert_eq!(
            sig.to_vec(),
            hex("01 00 00 00 7f b3 8e c5 c5 5d 49 76 00 00 00 00")
        );
    }

    #[test]
    fn directions_differ_and_verify_round_trips() {
        let key = [7u8; 16];
        let flags = NegotiateFlags(0xe28a_8233);
        let mut a = Signer::new(&key, flags, Direction::ClientToServer);
        let mut b = Signer::new(&key, flags, Direction::ClientToServer);
        let mut c = Signer::new(&key, flags, Direction::ServerToClient);
        let sig = a.sign(b"mechTypes");
        assert_ne!(sig, c.sign(b"mechTypes"));
        assert!(b.verify(b"mechTypes", &sig));
        let mut d = Signer::new(&key, flags, Direction::ClientToServer);
        let mut bad = sig;
        bad[5] ^= 1;
        assert!(!d.verify(b"mechTypes", &bad));
    }
}
