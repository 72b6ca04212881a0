//! NEGOTIATE, CHALLENGE and AUTHENTICATE messages (MS-NLMP §2.2.1).
//!
//! Every message is checked the same way: the signature and type, the fixed
//! header through a bounded reader, then every payload field at once:
//! inside the message, outside the header, no two fields sharing bytes.
//! Unused bytes between or after fields are allowed (Windows pads); bytes a
//! field claims that are not there are not.

use super::av::AvPairs;
use super::codec::{
    decode_string, encode_string, payload_start, resolve_fields, FieldRef, Reader, Writer,
};
use super::{NegotiateFlags, NtlmError, MAX_MESSAGE_LEN, NTLMSSP_SIGNATURE};

/// MessageType of a NEGOTIATE_MESSAGE.
pub const NEGOTIATE: u32 = 1;
/// MessageType of a CHALLENGE_MESSAGE.
pub const CHALLENGE: u32 = 2;
/// MessageType of an AUTHENTICATE_MESSAGE.
pub const AUTHENTICATE: u32 = 3;

/// Offset of the MIC in an AUTHENTICATE message.
pub const MIC_OFFSET: usize = 72;
/// End of the MIC in an AUTHENTICATE message.
pub const MIC_END: usize = 88;

/// The VERSION structure (MS-NLMP §2.2.2.10): informational only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// ProductMajorVersion.
    pub major: u8,
    /// ProductMinorVersion.
    pub minor: u8,
    /// ProductBuild.
    pub build: u16,
    /// NTLMRevisionCurrent (15 for NTLMSSP_REVISION_W2K3).
    pub revision: u8,
}

impl Version {
    /// What iwa sends: Windows 10 / Server 2016+ numbering, NTLM revision 15.
    pub const DEFAULT: Version = Version {
        major: 10,
        minor: 0,
        build: 20348,
        revision: 15,
    };

    fn decode(r: &mut Reader<'_>) -> Result<Version, NtlmError> {
        let major = r.u8("VERSION")?;
        let minor = r.u8("VERSION")?;
        let build = r.u16("VERSION")?;
        let _reserved: [u8; 3] = r.array("VERSION")?;
        let revision = r.u8("VERSION")?;
        Ok(Version {
            major,
            minor,
            build,
            revision,
        })
    }

    fn encode(&self) -> [u8; 8] {
        let [b0, b1] = self.build.to_le_bytes();
        [self.major, self.minor, b0, b1, 0, 0, 0, self.revision]
    }
}

/// Checks size, signature and message type; returns a reader positioned
/// after the MessageType field.
fn open<'a>(
    input: &'a [u8],
    expected_type: u32,
    expected: &'static str,
) -> Result<Reader<'a>, NtlmError> {
    let found = message_type(input)?;
    if found != expected_type {
        return Err(NtlmError::UnexpectedMessageType { expected, found });
    }
    let mut r = Reader::new(input);
    r.take(12, "NTLMSSP header")?;
    Ok(r)
}

/// The MessageType of an NTLMSSP message, after checking its size and
/// signature. Unknown types are an error.
pub fn message_type(input: &[u8]) -> Result<u32, NtlmError> {
    if input.is_empty() {
        return Err(NtlmError::Empty);
    }
    if input.len() > MAX_MESSAGE_LEN {
        return Err(NtlmError::TooLong {
            len: input.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let prefix = input.get(..8).unwrap_or(input);
    if NTLMSSP_SIGNATURE.get(..prefix.len()) != Some(prefix) {
        return Err(NtlmError::BadSignature);
    }
    let mut r = Reader::new(input);
    r.take(8, "NTLMSSP signature")?;
    match r.u32("NTLMSSP MessageType")? {
        t @ (NEGOTIATE | CHALLENGE | AUTHENTICATE) => Ok(t),
        found => Err(NtlmError::UnknownMessageType { found }),
    }
}

/// Any of the three messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmMessage {
    /// Type 1.
    Negotiate(NegotiateMessage),
    /// Type 2.
    Challenge(ChallengeMessage),
    /// Type 3.
    Authenticate(AuthenticateMessage),
}

impl NtlmMessage {
    /// Decodes a message of any type, dispatching on MessageType.
    pub fn decode(input: &[u8]) -> Result<NtlmMessage, NtlmError> {
        match message_type(input)? {
            NEGOTIATE => NegotiateMessage::decode(input).map(NtlmMessage::Negotiate),
            CHALLENGE => ChallengeMessage::decode(input).map(NtlmMessage::Challenge),
            _ => AuthenticateMessage::decode(input).map(NtlmMessage::Authenticate),
        }
    }

    /// Encodes the message.
    pub fn encode(&self) -> Result<Vec<u8>, NtlmError> {
        match self {
            NtlmMessage::Negotiate(m) => m.encode(),
            NtlmMessage::Challenge(m) => m.encode(),
            NtlmMessage::Authenticate(m) => m.encode(),
        }
    }
}

fn empty_field(name: &'static str) -> FieldRef {
    FieldRef {
        name,
        len: 0,
        offset: 0,
    }
}

/// NEGOTIATE_MESSAGE (§2.2.1.1), client → server.
///
/// Accepted shapes: 16 bytes (flags only), 32 bytes (curl: empty domain and
/// workstation fields, no VERSION), 40 bytes and more (VERSION, optional OEM
/// domain/workstation payload).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NegotiateMessage {
    /// NegotiateFlags the client requests.
    pub flags: NegotiateFlags,
    /// The client's domain, OEM bytes as sent (only with
    /// `OEM_DOMAIN_SUPPLIED`; informational).
    pub domain: Vec<u8>,
    /// The client's workstation, OEM bytes as sent (only with
    /// `OEM_WORKSTATION_SUPPLIED`; informational).
    pub workstation: Vec<u8>,
    /// VERSION, when `NEGOTIATE_VERSION` is set and the header has room.
    pub version: Option<Version>,
}

impl NegotiateMessage {
    /// Decodes a NEGOTIATE_MESSAGE.
    pub fn decode(input: &[u8]) -> Result<NegotiateMessage, NtlmError> {
        let mut r = open(input, NEGOTIATE, "NEGOTIATE")?;
        let flags = NegotiateFlags(r.u32("NEGOTIATE NegotiateFlags")?);
        if r.remaining() == 0 {
            return Ok(NegotiateMessage {
                flags,
                ..NegotiateMessage::default()
            });
        }
        let mut domain = r.field("NEGOTIATE DomainName")?;
        let mut workstation = r.field("NEGOTIATE Workstation")?;
        if !flags.contains(NegotiateFlags::OEM_DOMAIN_SUPPLIED) {
            domain = empty_field(domain.name);
        }
        if !flags.contains(NegotiateFlags::OEM_WORKSTATION_SUPPLIED) {
            workstation = empty_field(workstation.name);
        }
        let mut header_len = 32;
        let mut version = None;
        if flags.contains(NegotiateFlags::VERSION)
            && payload_start(input, &[domain, workstation]) >= 40
            && r.remaining() >= 8
        {
            version = Some(Version::decode(&mut r)?);
            header_len = 40;
        }
        let [d, w] = resolve_fields(input, header_len, [domain, workstation])?;
        Ok(NegotiateMessage {
            flags,
            domain: d.to_vec(),
            workstation: w.to_vec(),
            version,
        })
    }

    /// Encodes the message (40 bytes plus payload with a VERSION, else 32).
    pub fn encode(&self) -> Result<Vec<u8>, NtlmError> {
        let header_len = if self.version.is_some() { 40 } else { 32 };
        let mut w = Writer::new(header_len);
        w.put(0, NTLMSSP_SIGNATURE)?;
        w.put(8, &NEGOTIATE.to_le_bytes())?;
        w.put(12, &self.flags.bits().to_le_bytes())?;
        if let Some(v) = &self.version {
            w.put(32, &v.encode())?;
        }
        if !self.domain.is_empty() {
            w.payload(16, "NEGOTIATE DomainName", &self.domain)?;
        }
        if !self.workstation.is_empty() {
            w.payload(24, "NEGOTIATE Workstation", &self.workstation)?;
        }
        Ok(w.finish())
    }
}

/// CHALLENGE_MESSAGE (§2.2.1.2), server → client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeMessage {
    /// Negotiated flags.
    pub flags: NegotiateFlags,
    /// TargetName (the NetBIOS domain for `TARGET_TYPE_DOMAIN`), in the
    /// negotiated character set.
    pub target_name: String,
    /// The 8-byte server challenge.
    pub server_challenge: [u8; 8],
    /// TargetInfo (`None` when the field is empty).
    pub target_info: Option<AvPairs>,
    /// VERSION, when `NEGOTIATE_VERSION` is set and the header has room.
    pub version: Option<Version>,
}

impl ChallengeMessage {
    /// Decodes a CHALLENGE_MESSAGE.
    pub fn decode(input: &[u8]) -> Result<ChallengeMessage, NtlmError> {
        let mut r = open(input, CHALLENGE, "CHALLENGE")?;
        let target_name = r.field("CHALLENGE TargetName")?;
        let flags = NegotiateFlags(r.u32("CHALLENGE NegotiateFlags")?);
        let server_challenge: [u8; 8] = r.array("CHALLENGE ServerChallenge")?;
        let _reserved: [u8; 8] = r.array("CHALLENGE Reserved")?;
        let target_info = r.field("CHALLENGE TargetInfo")?;
        let mut header_len = 48;
        let mut version = None;
        if flags.contains(NegotiateFlags::VERSION)
            && payload_start(input, &[target_name, target_info]) >= 56
            && r.remaining() >= 8
        {
            version = Some(Version::decode(&mut r)?);
            header_len = 56;
        }
        let [name, info] = resolve_fields(input, header_len, [target_name, target_info])?;
        let unicode = flags.contains(NegotiateFlags::UNICODE);
        let target_info = if info.is_empty() {
            None
        } else {
            Some(AvPairs::decode(info)?.0)
        };
        Ok(ChallengeMessage {
            flags,
            target_name: decode_string(name, unicode, "CHALLENGE TargetName")?,
            server_challenge,
            target_info,
            version,
        })
    }

    /// Encodes the message: a 56-byte header with a VERSION (set
    /// `NEGOTIATE_VERSION` too), else 48; then TargetName, then TargetInfo.
    pub fn encode(&self) -> Result<Vec<u8>, NtlmError> {
        let mut w = Writer::new(if self.version.is_some() { 56 } else { 48 });
        w.put(0, NTLMSSP_SIGNATURE)?;
        w.put(8, &CHALLENGE.to_le_bytes())?;
        w.put(20, &self.flags.bits().to_le_bytes())?;
        w.put(24, &self.server_challenge)?;
        if let Some(v) = &self.version {
            w.put(48, &v.encode())?;
        }
        let unicode = self.flags.contains(NegotiateFlags::UNICODE);
        let name = encode_string(&self.target_name, unicode, "CHALLENGE TargetName")?;
        if !name.is_empty() {
            w.payload(12, "CHALLENGE TargetName", &name)?;
        }
        if let Some(info) = &self.target_info {
            w.payload(40, "CHALLENGE TargetInfo", &info.encode()?)?;
        }
        Ok(w.finish())
    }
}

/// AUTHENTICATE_MESSAGE (§2.2.1.3), client → server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthenticateMessage {
    /// NegotiateFlags as the client finally chose them.
    pub flags: NegotiateFlags,
    /// LmChallengeResponse.
    pub lm_response: Vec<u8>,
    /// NtChallengeResponse.
    pub nt_response: Vec<u8>,
    /// DomainName (Unicode or OEM per `flags`).
    pub domain: String,
    /// UserName.
    pub user: String,
    /// Workstation.
    pub workstation: String,
    /// EncryptedRandomSessionKey (used with `KEY_EXCH`).
    pub encrypted_random_session_key: Vec<u8>,
    /// VERSION, when `NEGOTIATE_VERSION` is set and the header has room.
    pub version: Option<Version>,
    /// The 16 bytes at offset 72 when the header has room for them (the
    /// payload starts at 88 or later). They are a MIC only if the NTLMv2
    /// response's `MsvAvFlags` says so; the decoder cannot know.
    pub mic: Option<[u8; 16]>,
}

impl AuthenticateMessage {
    /// Decodes an AUTHENTICATE_MESSAGE (at least the 64-byte header).
    pub fn decode(input: &[u8]) -> Result<AuthenticateMessage, NtlmError> {
        let mut r = open(input, AUTHENTICATE, "AUTHENTICATE")?;
        let lm = r.field("LmChallengeResponse")?;
        let nt = r.field("NtChallengeResponse")?;
        let domain = r.field("DomainName")?;
        let user = r.field("UserName")?;
        let workstation = r.field("Workstation")?;
        let key = r.field("EncryptedRandomSessionKey")?;
        let flags = NegotiateFlags(r.u32("AUTHENTICATE NegotiateFlags")?);
        let fields = [lm, nt, domain, user, workstation, key];
        let start = payload_start(input, &fields);
        let version =
            if flags.contains(NegotiateFlags::VERSION) && start >= MIC_OFFSET && r.remaining() >= 8
            {
                Some(Version::decode(&mut r)?)
            } else {
                None
            };
        let mic = if start >= MIC_END {
            input
                .get(MIC_OFFSET..MIC_END)
                .and_then(|m| <[u8; 16]>::try_from(m).ok())
        } else {
            None
        };
        let [lm, nt, domain, user, workstation, key] = resolve_fields(input, 64, fields)?;
        let unicode = flags.contains(NegotiateFlags::UNICODE);
        Ok(AuthenticateMessage {
            flags,
            lm_response: lm.to_vec(),
            nt_response: nt.to_vec(),
            domain: decode_string(domain, unicode, "DomainName")?,
            user: decode_string(user, unicode, "UserName")?,
            workstation: decode_string(workstation, unicode, "Workstation")?,
            encrypted_random_session_key: key.to_vec(),
            version,
            mic,
        })
    }

    /// Encodes the message (what a client sends; used by tests and tools).
    /// Header: 88 bytes with a MIC, 72 with a VERSION, else 64. Payload
    /// order: domain, user, workstation, LM, NT, session key (as Windows and
    /// the MS-NLMP §4.2.4.3 example do).
    pub fn encode(&self) -> Result<Vec<u8>, NtlmError> {
        let header_len = if self.mic.is_some() {
            MIC_END
        } else if self.version.is_some() {
            MIC_OFFSET
        } else {
            64
        };
        let unicode = self.flags.contains(NegotiateFlags::UNICODE);
        let mut w = Writer::new(header_len);
        w.put(0, NTLMSSP_SIGNATURE)?;
        w.put(8, &AUTHENTICATE.to_le_bytes())?;
        w.put(60, &self.flags.bits().to_le_bytes())?;
        if let Some(v) = &self.version {
            w.put(64, &v.encode())?;
        }
        if let Some(mic) = &self.mic {
            w.put(MIC_OFFSET, mic)?;
        }
        w.payload(
            28,
            "DomainName",
            &encode_string(&self.domain, unicode, "DomainName")?,
        )?;
        w.payload(
            36,
            "UserName",
            &encode_string(&self.user, unicode, "UserName")?,
        )?;
        w.payload(
            44,
            "Workstation",
            &encode_string(&self.workstation, unicode, "Workstation")?,
        )?;
        w.payload(12, "LmChallengeResponse", &self.lm_response)?;
        w.payload(20, "NtChallengeResponse", &self.nt_response)?;
        w.payload(
            52,
            "EncryptedRandomSessionKey",
            &self.encrypted_random_session_key,
        )?;
        Ok(w.finish())
    }
}
