//! NTLM (MS-NLMP): the three messages, AV_PAIR lists, the NTLMv2 math, and
//! a server handshake that accepts NTLMv2 only.
//!
//! - [`messages`]: [`NegotiateMessage`], [`ChallengeMessage`],
//!   [`AuthenticateMessage`] and [`NtlmMessage::decode`], which dispatches
//!   on the message type. Decoders accept every real client's shape (curl's
//!   32-byte NEGOTIATE, Windows' VERSION and MIC, OEM or Unicode strings)
//!   and check every payload field against the message first.
//! - [`av`]: AV_PAIR lists ([`AvPairs`]).
//! - [`crypto`]: NT hash, NTOWFv2, NTProofStr, SessionBaseKey, RC4 key
//!   exchange, MIC, channel-binding hash.
//! - [`v2`]: the NTLMv2 response and the refusal of every older form.
//! - [`server`]: [`ServerHandshake`] → [`ChallengeSent`] →
//!   [`AuthenticateReceived`] → [`Authenticated`], by value.
//! - [`client`]: a minimal NTLMv2 client for tests, fuzz seeds and tools.
//!
//! Nothing here reads a clock or a random source: the server challenge and
//! the time are parameters.

pub mod av;
pub mod client;
mod codec;
pub mod crypto;
mod error;
mod flags;
pub mod messages;
pub mod server;
pub mod sign;
pub mod v2;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use av::{AvPair, AvPairs, MAX_AV_PAIRS};
pub use error::NtlmError;
pub use flags::NegotiateFlags;
pub use messages::{AuthenticateMessage, ChallengeMessage, NegotiateMessage, NtlmMessage, Version};
pub use server::{
    check_channel_bindings, AuthenticateReceived, Authenticated, ChallengeSent, ServerConfig,
    ServerHandshake, SessionKey,
};
pub use v2::NtlmV2Response;

pub use crate::spnego::NTLMSSP_SIGNATURE;

/// Reject NTLM messages larger than this before parsing (64 KiB; real ones
/// are well under 4 KiB).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// A Windows FILETIME: 100-nanosecond ticks since 1601-01-01 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileTime(pub u64);

impl FileTime {
    /// 1970-01-01T00:00:00Z as a FILETIME.
    pub const UNIX_EPOCH: FileTime = FileTime(116_444_736_000_000_000);

    /// The FILETIME of a duration since the Unix epoch (saturating).
    pub fn from_unix(since_epoch: Duration) -> FileTime {
        let ticks = u64::try_from(since_epoch.as_nanos() / 100).unwrap_or(u64::MAX);
        FileTime(Self::UNIX_EPOCH.0.saturating_add(ticks))
    }

    /// The FILETIME of a `SystemTime` (times before 1970 saturate to the
    /// Unix epoch). Pure conversion; the caller reads the clock.
    pub fn from_system_time(t: SystemTime) -> FileTime {
        Self::from_unix(t.duration_since(UNIX_EPOCH).unwrap_or_default())
    }
}
