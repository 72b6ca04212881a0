//! The server (acceptor) side of an NTLM handshake, as a state machine that
//! moves by value: [`ServerHandshake`] → [`ChallengeSent`] →
//! [`AuthenticateReceived`] → [`Authenticated`]. A state that has been used
//! is gone, so a challenge cannot be answered twice.
//!
//! Two ways to finish:
//! - **local**: [`ChallengeSent::process_authenticate`] (or
//!   [`AuthenticateReceived::verify_with_nt_hash`]) with the user's NT hash;
//!   NTProofStr is checked here, in constant time.
//! - **pass-through** (winbind: the domain controller checks the response
//!   against our challenge): [`ChallengeSent::receive_authenticate`] gives
//!   the user, domain, workstation and raw LM/NT responses to send to the DC;
//!   the DC's user session key (the NTLMv2 SessionBaseKey) then goes to
//!   [`AuthenticateReceived::complete_with_session_base_key`], which derives
//!   the exported session key and verifies the MIC.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::av::{av_flags, AvPair, AvPairs};
use super::crypto::{self, ct_eq};
use super::messages::{
    AuthenticateMessage, ChallengeMessage, NegotiateMessage, Version, MIC_END, MIC_OFFSET,
};
use super::v2::{classify, NtlmV2Response};
use super::{FileTime, NegotiateFlags, NtlmError};

/// What the server says about itself in the CHALLENGE.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// NetBIOS domain name (`MsvAvNbDomainName`, and the TargetName), e.g.
    /// `EXAMPLE`.
    pub nb_domain_name: String,
    /// NetBIOS computer name (`MsvAvNbComputerName`), e.g. `GATEWAY`.
    pub nb_computer_name: String,
    /// DNS domain name (`MsvAvDnsDomainName`), e.g. `example.com`.
    pub dns_domain_name: Option<String>,
    /// DNS computer name (`MsvAvDnsComputerName`), e.g. `gw.example.com`.
    pub dns_computer_name: Option<String>,
    /// DNS forest name (`MsvAvDnsTreeName`).
    pub dns_tree_name: Option<String>,
    /// VERSION sent when the client asks for one.
    pub version: Version,
    /// How far the NTLMv2 timestamp may be from the server's clock.
    pub max_clock_skew: Duration,
    /// Refuse AUTHENTICATE messages without a MIC (Windows and pyspnego
    /// send one; curl does not).
    pub require_mic: bool,
}

impl ServerConfig {
    /// A configuration with the two mandatory NetBIOS names, no DNS names,
    /// a 5-minute clock skew and the MIC checked when present but not
    /// required.
    pub fn new(nb_domain_name: impl Into<String>, nb_computer_name: impl Into<String>) -> Self {
        ServerConfig {
            nb_domain_name: nb_domain_name.into(),
            nb_computer_name: nb_computer_name.into(),
            dns_domain_name: None,
            dns_computer_name: None,
            dns_tree_name: None,
            version: Version::DEFAULT,
            max_clock_skew: Duration::from_secs(300),
            require_mic: false,
        }
    }

    fn target_info(&self, now: FileTime) -> AvPairs {
        let mut pairs = vec![
            AvPair::NbDomainName(self.nb_domain_name.clone()),
            AvPair::NbComputerName(self.nb_computer_name.clone()),
        ];
        if let Some(d) = &self.dns_domain_name {
            pairs.push(AvPair::DnsDomainName(d.clone()));
        }
        if let Some(c) = &self.dns_computer_name {
            pairs.push(AvPair::DnsComputerName(c.clone()));
        }
        if let Some(t) = &self.dns_tree_name {
            pairs.push(AvPair::DnsTreeName(t.clone()));
        }
        pairs.push(AvPair::Timestamp(now));
        AvPairs(pairs)
    }
}

/// The flags of the CHALLENGE, from what the client asked for: the character
/// set (Unicode preferred, OEM if that is all the client offers), NTLM,
/// TargetInfo (always: it is what makes clients such as curl answer with
/// NTLMv2), a domain TargetName, and the session-security bits echoed when
/// requested. LM_KEY, DATAGRAM and ANONYMOUS are never granted.
pub fn challenge_flags(client: NegotiateFlags) -> NegotiateFlags {
    let mut flags = NegotiateFlags::NTLM
        | NegotiateFlags::TARGET_INFO
        | NegotiateFlags::REQUEST_TARGET
        | NegotiateFlags::TARGET_TYPE_DOMAIN;
    if client.contains(NegotiateFlags::UNICODE) || !client.contains(NegotiateFlags::OEM) {
        flags |= NegotiateFlags::UNICODE;
    } else {
        flags |= NegotiateFlags::OEM;
    }
    for echoed in [
        NegotiateFlags::SIGN,
        NegotiateFlags::SEAL,
        NegotiateFlags::ALWAYS_SIGN,
        NegotiateFlags::EXTENDED_SESSIONSECURITY,
        NegotiateFlags::VERSION,
        NegotiateFlags::NEGOTIATE_128,
        NegotiateFlags::NEGOTIATE_56,
        NegotiateFlags::KEY_EXCH,
        NegotiateFlags::IDENTIFY,
    ] {
        if client.contains(echoed) {
            flags |= echoed;
        }
    }
    flags
}

/// A fresh handshake: waiting for the client's NEGOTIATE.
#[derive(Debug)]
pub struct ServerHandshake {
    config: Arc<ServerConfig>,
    server_challenge: [u8; 8],
    now: FileTime,
}

impl ServerHandshake {
    /// Starts a handshake. `server_challenge` must come from a CSPRNG (this
    /// crate does no I/O and has no randomness); `now` is the server time
    /// sent as `MsvAvTimestamp`.
    pub fn new(config: Arc<ServerConfig>, server_challenge: [u8; 8], now: FileTime) -> Self {
        ServerHandshake {
            config,
            server_challenge,
            now,
        }
    }

    /// Consumes the client's NEGOTIATE; returns the next state and the
    /// CHALLENGE message to send.
    pub fn process_negotiate(
        self,
        negotiate: &[u8],
    ) -> Result<(ChallengeSent, Vec<u8>), NtlmError> {
        let neg = NegotiateMessage::decode(negotiate)?;
        let flags = challenge_flags(neg.flags);
        let challenge = ChallengeMessage {
            flags,
            target_name: self.config.nb_domain_name.clone(),
            server_challenge: self.server_challenge,
            target_info: Some(self.config.target_info(self.now)),
            version: flags
                .contains(NegotiateFlags::VERSION)
                .then_some(self.config.version),
        };
        let challenge_bytes = challenge.encode()?;
        let state = ChallengeSent {
            config: self.config,
            server_challenge: self.server_challenge,
            flags,
            negotiate: negotiate.to_vec(),
            challenge: challenge_bytes.clone(),
        };
        Ok((state, challenge_bytes))
    }
}

/// The CHALLENGE has been sent; waiting for the AUTHENTICATE.
#[derive(Debug)]
pub struct ChallengeSent {
    config: Arc<ServerConfig>,
    server_challenge: [u8; 8],
    flags: NegotiateFlags,
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
}

impl ChallengeSent {
    /// The server challenge (for a pass-through validator).
    pub fn server_challenge(&self) -> [u8; 8] {
        self.server_challenge
    }

    /// The flags the CHALLENGE offered.
    pub fn flags(&self) -> NegotiateFlags {
        self.flags
    }

    /// The CHALLENGE message as sent.
    pub fn challenge_message(&self) -> &[u8] {
        &self.challenge
    }

    /// Decodes the AUTHENTICATE and applies every check that needs no
    /// secret: refuses anonymous, LM, NTLMv1 and NTLM2-session-response
    /// logons; decodes the NTLMv2 response; checks its timestamp against
    /// `now` within the configured skew; requires the MIC when `MsvAvFlags`
    /// announces one (and when the configuration demands one); requires a
    /// 16-byte EncryptedRandomSessionKey under `KEY_EXCH`.
    pub fn receive_authenticate(
        self,
        authenticate: &[u8],
        now: FileTime,
    ) -> Result<AuthenticateReceived, NtlmError> {
        let message = AuthenticateMessage::decode(authenticate)?;
        let response = classify(&message)?;

        let skew = self.config.max_clock_skew;
        let max_ticks = u64::try_from(skew.as_nanos() / 100).unwrap_or(u64::MAX);
        if response.timestamp.0.abs_diff(now.0) > max_ticks {
            return Err(NtlmError::TimestampOutOfSkew {
                client: response.timestamp,
                now,
                max_skew_secs: skew.as_secs(),
            });
        }

        let mic_announced = response.av_pairs.flags() & av_flags::MIC_PRESENT != 0;
        if mic_announced && message.mic.is_none() {
            return Err(NtlmError::MicAbsent);
        }
        if !mic_announced && self.config.require_mic {
            return Err(NtlmError::MicRequired);
        }

        if message.flags.contains(NegotiateFlags::KEY_EXCH)
            && message.encrypted_random_session_key.len() != 16
        {
            return Err(NtlmError::BadEncryptedSessionKey {
                len: message.encrypted_random_session_key.len(),
            });
        }

        Ok(AuthenticateReceived {
            server_challenge: self.server_challenge,
            negotiate: self.negotiate,
            challenge: self.challenge,
            authenticate: authenticate.to_vec(),
            message,
            response,
            mic_announced,
        })
    }

    /// The whole local verification: [`Self::receive_authenticate`], then
    /// `lookup(user, domain)` for the user's NT hash, then
    /// [`AuthenticateReceived::verify_with_nt_hash`]. An unknown user costs
    /// the same hashing as a known one and fails with
    /// [`NtlmError::UnknownUser`].
    pub fn process_authenticate(
        self,
        authenticate: &[u8],
        now: FileTime,
        lookup: impl FnOnce(&str, &str) -> Option<[u8; 16]>,
    ) -> Result<Authenticated, NtlmError> {
        let received = self.receive_authenticate(authenticate, now)?;
        match lookup(received.user(), received.domain()) {
            Some(hash) => received.verify_with_nt_hash(&hash),
            None => {
                // Same work as a wrong password, then the precise error.
                let _ = received.verify_with_nt_hash(&[0; 16]);
                Err(NtlmError::UnknownUser)
            }
        }
    }
}

/// A structurally valid NTLMv2 AUTHENTICATE, not yet verified.
#[derive(Debug)]
pub struct AuthenticateReceived {
    server_challenge: [u8; 8],
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
    authenticate: Vec<u8>,
    message: AuthenticateMessage,
    response: NtlmV2Response,
    mic_announced: bool,
}

impl AuthenticateReceived {
    /// UserName as sent.
    pub fn user(&self) -> &str {
        &self.message.user
    }

    /// DomainName as sent (may be empty).
    pub fn domain(&self) -> &str {
        &self.message.domain
    }

    /// Workstation as sent (may be empty).
    pub fn workstation(&self) -> &str {
        &self.message.workstation
    }

    /// LmChallengeResponse, raw (for a pass-through validator).
    pub fn lm_response(&self) -> &[u8] {
        &self.message.lm_response
    }

    /// NtChallengeResponse, raw (for a pass-through validator).
    pub fn nt_response(&self) -> &[u8] {
        &self.message.nt_response
    }

    /// The server challenge this AUTHENTICATE answers.
    pub fn server_challenge(&self) -> [u8; 8] {
        self.server_challenge
    }

    /// The decoded message.
    pub fn message(&self) -> &AuthenticateMessage {
        &self.message
    }

    /// The decoded NTLMv2 response.
    pub fn ntlmv2_response(&self) -> &NtlmV2Response {
        &self.response
    }

    /// Whether `MsvAvFlags` announces a MIC (which will be verified).
    pub fn mic_announced(&self) -> bool {
        self.mic_announced
    }

    /// Local verification: derives ResponseKeyNT from `nt_hash` and the
    /// user/domain as sent, checks NTProofStr in constant time, then
    /// finishes as [`Self::complete_with_session_base_key`].
    pub fn verify_with_nt_hash(self, nt_hash: &[u8; 16]) -> Result<Authenticated, NtlmError> {
        let key = crypto::nt_owf_v2(nt_hash, &self.message.user, &self.message.domain);
        let proof = crypto::nt_proof_str(&key, &self.server_challenge, &self.response.temp);
        if !ct_eq(&proof, &self.response.nt_proof_str) {
            return Err(NtlmError::NtProofMismatch);
        }
        let base = crypto::session_base_key(&key, &proof);
        self.complete_with_session_base_key(&base)
    }

    /// Pass-through completion: the NTProofStr has been verified elsewhere
    /// (the domain controller), which returned the SessionBaseKey (its "user
    /// session key"). Derives the exported session key (RC4-decrypting
    /// EncryptedRandomSessionKey under `KEY_EXCH`) and verifies the MIC in
    /// constant time when one is announced.
    pub fn complete_with_session_base_key(
        self,
        session_base_key: &[u8; 16],
    ) -> Result<Authenticated, NtlmError> {
        // NTLMv2: KeyExchangeKey = SessionBaseKey.
        let exported = if self.message.flags.contains(NegotiateFlags::KEY_EXCH) {
            let enc = <[u8; 16]>::try_from(self.message.encrypted_random_session_key.as_slice())
                .map_err(|_| NtlmError::BadEncryptedSessionKey {
                    len: self.message.encrypted_random_session_key.len(),
                })?;
            crypto::rc4_16(session_base_key, &enc)
        } else {
            *session_base_key
        };
        if self.mic_announced {
            self.verify_mic(&exported)?;
        }
        Ok(Authenticated {
            user: self.message.user,
            domain: self.message.domain,
            workstation: self.message.workstation,
            session_key: SessionKey(exported),
            flags: self.message.flags,
            target_name: self.response.av_pairs.target_name().map(str::to_owned),
            channel_bindings: self.response.av_pairs.channel_bindings(),
            mic_verified: self.mic_announced,
            client_timestamp: self.response.timestamp,
        })
    }

    /// Checks the MIC against `exported_session_key`.
    pub fn verify_mic(&self, exported_session_key: &[u8; 16]) -> Result<(), NtlmError> {
        let received = self.message.mic.ok_or(NtlmError::MicAbsent)?;
        let mut zeroed = self.authenticate.clone();
        zeroed
            .get_mut(MIC_OFFSET..MIC_END)
            .ok_or(NtlmError::MicAbsent)?
            .fill(0);
        let expected = crypto::mic(
            exported_session_key,
            &self.negotiate,
            &self.challenge,
            &zeroed,
        );
        if ct_eq(&expected, &received) {
            Ok(())
        } else {
            Err(NtlmError::MicMismatch)
        }
    }
}

/// The exported session key (16 bytes). Its `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 16]);

impl SessionKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// A verified NTLMv2 logon.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// UserName as sent by the client.
    pub user: String,
    /// DomainName as sent (may be empty).
    pub domain: String,
    /// Workstation as sent.
    pub workstation: String,
    /// ExportedSessionKey.
    pub session_key: SessionKey,
    /// The AUTHENTICATE's NegotiateFlags.
    pub flags: NegotiateFlags,
    /// `MsvAvTargetName` (the SPN the client meant, e.g. `HTTP/gw.example.com`);
    /// the caller compares it with its SPNs.
    pub target_name: Option<String>,
    /// `MsvAvChannelBindings`; check with [`Authenticated::check_channel_bindings`].
    pub channel_bindings: Option<[u8; 16]>,
    /// Whether a MIC was present and verified.
    pub mic_verified: bool,
    /// The NTLMv2 timestamp.
    pub client_timestamp: FileTime,
}

impl Authenticated {
    /// Requires `MsvAvChannelBindings` equal to `expected` (e.g.
    /// [`crypto::tls_server_end_point_channel_bindings`] of this connection's
    /// certificate hash). Absent or all-zero bindings (a client that has
    /// none) fail with [`NtlmError::ChannelBindingsAbsent`].
    pub fn check_channel_bindings(&self, expected: &[u8; 16]) -> Result<(), NtlmError> {
        check_channel_bindings(self.channel_bindings.as_ref(), expected)
    }
}

/// Compares received channel bindings with the expected hash in constant
/// time; absent or all-zero received bindings are
/// [`NtlmError::ChannelBindingsAbsent`].
pub fn check_channel_bindings(
    received: Option<&[u8; 16]>,
    expected: &[u8; 16],
) -> Result<(), NtlmError> {
    match received {
        None => Err(NtlmError::ChannelBindingsAbsent),
        Some(r) if r == &[0u8; 16] => Err(NtlmError::ChannelBindingsAbsent),
        Some(r) if ct_eq(r, expected) => Ok(()),
        Some(_) => Err(NtlmError::ChannelBindingsMismatch),
    }
}
