//! The NTLMv2 response (MS-NLMP §2.2.2.8, §2.2.2.7) and the classification
//! of an AUTHENTICATE's responses into NTLMv2 or a refused legacy form.

use super::av::AvPairs;
use super::codec::Reader;
use super::messages::AuthenticateMessage;
use super::{FileTime, NegotiateFlags, NtlmError};

/// NTProofStr (16) + the fixed part of NTLMv2_CLIENT_CHALLENGE (28) +
/// MsvAvEOL (4).
pub const MIN_NTLMV2_RESPONSE_LEN: usize = 48;

/// A decoded NTLMv2_RESPONSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmV2Response {
    /// The first 16 bytes: HMAC-MD5 over the server challenge and `temp`.
    pub nt_proof_str: [u8; 16],
    /// Everything after NTProofStr, exactly as received (what NTProofStr
    /// covers).
    pub temp: Vec<u8>,
    /// `TimeStamp` of the client challenge.
    pub timestamp: FileTime,
    /// `ChallengeFromClient`.
    pub client_challenge: [u8; 8],
    /// The AV pairs (the server's TargetInfo as echoed, plus the client's
    /// MsvAvFlags, MsvAvTargetName, MsvAvChannelBindings, ...).
    pub av_pairs: AvPairs,
}

impl NtlmV2Response {
    /// Decodes an NtChallengeResponse that is longer than 24 bytes.
    pub fn decode(nt_response: &[u8]) -> Result<NtlmV2Response, NtlmError> {
        if nt_response.len() < MIN_NTLMV2_RESPONSE_LEN {
            return Err(NtlmError::BlobTruncated {
                len: nt_response.len(),
                min: MIN_NTLMV2_RESPONSE_LEN,
            });
        }
        let mut r = Reader::new(nt_response);
        let nt_proof_str: [u8; 16] = r.array("NTProofStr")?;
        let temp = nt_response.get(16..).unwrap_or_default().to_vec();
        let resp_type = r.u8("RespType")?;
        let hi_resp_type = r.u8("HiRespType")?;
        if resp_type != 1 || hi_resp_type != 1 {
            return Err(NtlmError::UnsupportedRespType {
                resp_type,
                hi_resp_type,
            });
        }
        let _reserved: [u8; 6] = r.array("NTLMv2 Reserved1/2")?;
        let timestamp = FileTime(r.u64("NTLMv2 TimeStamp")?);
        let client_challenge: [u8; 8] = r.array("NTLMv2 ChallengeFromClient")?;
        let _reserved3: [u8; 4] = r.array("NTLMv2 Reserved3")?;
        let rest = r.take(r.remaining(), "NTLMv2 AvPairs")?;
        let (av_pairs, _used) = AvPairs::decode(rest)?;
        Ok(NtlmV2Response {
            nt_proof_str,
            temp,
            timestamp,
            client_challenge,
            av_pairs,
        })
    }
}

/// Sorts an AUTHENTICATE's responses: an NTLMv2 response is decoded, every
/// other form is refused with its own error.
///
/// - empty user and empty NT response and LM response empty or `Z(1)`, or
///   the `ANONYMOUS` flag: [`NtlmError::AnonymousRefused`];
/// - empty user otherwise: [`NtlmError::EmptyUserName`];
/// - no NT response, an LM response: [`NtlmError::LmRefused`];
/// - a 24-byte NT response with `EXTENDED_SESSIONSECURITY`:
///   [`NtlmError::Ntlm2SessionResponseRefused`]; without it
///   [`NtlmError::NtlmV1Refused`];
/// - anything else must decode as an NTLMv2 response.
pub fn classify(msg: &AuthenticateMessage) -> Result<NtlmV2Response, NtlmError> {
    let lm_empty = msg.lm_response.is_empty() || msg.lm_response.as_slice() == [0];
    if msg.flags.contains(NegotiateFlags::ANONYMOUS)
        || (msg.user.is_empty() && msg.nt_response.is_empty() && lm_empty)
    {
        return Err(NtlmError::AnonymousRefused);
    }
    if msg.user.is_empty() {
        return Err(NtlmError::EmptyUserName);
    }
    match msg.nt_response.len() {
        0 => Err(NtlmError::LmRefused),
        24 if msg.flags.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY) => {
            Err(NtlmError::Ntlm2SessionResponseRefused)
        }
        24 => Err(NtlmError::NtlmV1Refused),
        _ => NtlmV2Response::decode(&msg.nt_response),
    }
}
