//! A minimal NTLMv2 client: builds NEGOTIATE and AUTHENTICATE messages.
//!
//! The gateway never acts as an NTLM client; this exists so tests, fuzz
//! seeds, the load generator and `iwa demo` can speak NTLMv2 to the server
//! without an external tool. Randomness (client challenge, random session
//! key) is a parameter, like everything else in this crate.

use super::av::{av_flags, AvPair, AvPairs};
use super::crypto;
use super::messages::{
    AuthenticateMessage, ChallengeMessage, NegotiateMessage, Version, MIC_END, MIC_OFFSET,
};
use super::{FileTime, NegotiateFlags, NtlmError};

/// The NEGOTIATE flags a Windows 10 client sends (0xe2088297: Unicode, OEM,
/// request target, sign, LM_KEY, NTLM, always sign, extended session
/// security, VERSION, 128, key exchange, 56).
pub const WINDOWS_NEGOTIATE_FLAGS: NegotiateFlags = NegotiateFlags(0xe208_8297);

/// The NEGOTIATE flags curl sends (OEM, request target, NTLM, always sign,
/// extended session security), in a 32-byte message without VERSION.
pub const CURL_NEGOTIATE_FLAGS: NegotiateFlags = NegotiateFlags(0x0008_8206);

/// A NEGOTIATE message; with a VERSION when `flags` has `NEGOTIATE_VERSION`.
pub fn negotiate(flags: NegotiateFlags) -> Result<Vec<u8>, NtlmError> {
    NegotiateMessage {
        flags,
        version: flags
            .contains(NegotiateFlags::VERSION)
            .then_some(Version::DEFAULT),
        ..NegotiateMessage::default()
    }
    .encode()
}

/// Who the client is and how it answers.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// User name.
    pub user: String,
    /// Domain name (may be empty).
    pub domain: String,
    /// The user's NT hash ([`crypto::nt_hash`] of the password).
    pub nt_hash: [u8; 16],
    /// Workstation name.
    pub workstation: String,
    /// The 8-byte client challenge (random in a real client).
    pub client_challenge: [u8; 8],
    /// The random session key sent under `KEY_EXCH` (random in a real client).
    pub random_session_key: [u8; 16],
    /// Send a MIC (and announce it in `MsvAvFlags`).
    pub mic: bool,
    /// `MsvAvTargetName` to add, e.g. `HTTP/gw.example.com`.
    pub target_name: Option<String>,
    /// `MsvAvChannelBindings` to add.
    pub channel_bindings: Option<[u8; 16]>,
    /// The timestamp; default the CHALLENGE's `MsvAvTimestamp`.
    pub timestamp: Option<FileTime>,
}

impl ClientAuth {
    /// A client for `user`/`domain` with the NT hash of `password`, a fixed
    /// client challenge and session key, and a MIC.
    pub fn new(user: impl Into<String>, domain: impl Into<String>, password: &str) -> Self {
        ClientAuth {
            user: user.into(),
            domain: domain.into(),
            nt_hash: crypto::nt_hash(password),
            workstation: "WORKSTATION".to_owned(),
            client_challenge: [0xaa; 8],
            random_session_key: [0x55; 16],
            mic: true,
            target_name: None,
            channel_bindings: None,
            timestamp: None,
        }
    }

    /// Builds the AUTHENTICATE answering `challenge` (the exact bytes
    /// received), after `negotiate` (the exact bytes sent; covered by the MIC).
    pub fn authenticate(&self, negotiate: &[u8], challenge: &[u8]) -> Result<Vec<u8>, NtlmError> {
        let ch = ChallengeMessage::decode(challenge)?;
        let mut pairs = ch.target_info.clone().unwrap_or_default().0;
        let server_time = AvPairs(pairs.clone()).timestamp();
        if self.mic {
            let flags = AvPairs(pairs.clone()).flags() | av_flags::MIC_PRESENT;
            pairs.retain(|p| !matches!(p, AvPair::Flags(_)));
            pairs.push(AvPair::Flags(flags));
        }
        if let Some(t) = &self.target_name {
            pairs.push(AvPair::TargetName(t.clone()));
        }
        if let Some(cb) = self.channel_bindings {
            pairs.push(AvPair::ChannelBindings(cb));
        }
        let timestamp = self.timestamp.or(server_time).unwrap_or_default();
        let temp = crypto::ntlmv2_temp(
            timestamp.0,
            &self.client_challenge,
            &AvPairs(pairs).encode()?,
        );
        let key = crypto::nt_owf_v2(&self.nt_hash, &self.user, &self.domain);
        let proof = crypto::nt_proof_str(&key, &ch.server_challenge, &temp);
        let mut nt_response = proof.to_vec();
        nt_response.extend_from_slice(&temp);
        let base = crypto::session_base_key(&key, &proof);
        // With MsvAvTimestamp the client sends Z(24) instead of LMv2 (§3.1.5.1.2).
        let lm_response = if server_time.is_some() {
            vec![0; 24]
        } else {
            crypto::lmv2_response(&key, &ch.server_challenge, &self.client_challenge).to_vec()
        };
        let flags = ch.flags;
        let (exported, encrypted) = if flags.contains(NegotiateFlags::KEY_EXCH) {
            (
                self.random_session_key,
                crypto::rc4_16(&base, &self.random_session_key).to_vec(),
            )
        } else {
            (base, Vec::new())
        };
        let msg = AuthenticateMessage {
            flags,
            lm_response,
            nt_response,
            domain: self.domain.clone(),
            user: self.user.clone(),
            workstation: self.workstation.clone(),
            encrypted_random_session_key: encrypted,
            version: (flags.contains(NegotiateFlags::VERSION) || self.mic)
                .then_some(Version::DEFAULT),
            mic: self.mic.then_some([0; 16]),
        };
        let mut bytes = msg.encode()?;
        if self.mic {
            let mic = crypto::mic(&exported, negotiate, challenge, &bytes);
            if let Some(slot) = bytes.get_mut(MIC_OFFSET..MIC_END) {
                slot.copy_from_slice(&mic);
            }
        }
        Ok(bytes)
    }
}
