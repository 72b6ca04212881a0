//! AV_PAIR lists (MS-NLMP §2.2.2.1): the CHALLENGE's TargetInfo and the AV
//! pairs inside an NTLMv2 client challenge.

use super::codec::{decode_utf16le, utf16le, Reader};
use super::{FileTime, NtlmError};

/// The most pairs accepted in one list (Windows sends about ten).
pub const MAX_AV_PAIRS: usize = 64;

/// AvId values.
pub mod av_id {
    /// `MsvAvEOL`: end of list.
    pub const EOL: u16 = 0;
    /// `MsvAvNbComputerName`.
    pub const NB_COMPUTER_NAME: u16 = 1;
    /// `MsvAvNbDomainName`.
    pub const NB_DOMAIN_NAME: u16 = 2;
    /// `MsvAvDnsComputerName`.
    pub const DNS_COMPUTER_NAME: u16 = 3;
    /// `MsvAvDnsDomainName`.
    pub const DNS_DOMAIN_NAME: u16 = 4;
    /// `MsvAvDnsTreeName`.
    pub const DNS_TREE_NAME: u16 = 5;
    /// `MsvAvFlags`.
    pub const FLAGS: u16 = 6;
    /// `MsvAvTimestamp`.
    pub const TIMESTAMP: u16 = 7;
    /// `MsvAvSingleHost`.
    pub const SINGLE_HOST: u16 = 8;
    /// `MsvAvTargetName`.
    pub const TARGET_NAME: u16 = 9;
    /// `MsvAvChannelBindings`.
    pub const CHANNEL_BINDINGS: u16 = 10;
}

/// Bits of `MsvAvFlags`.
pub mod av_flags {
    /// The account authentication is constrained.
    pub const CONSTRAINED: u32 = 0x0000_0001;
    /// The AUTHENTICATE message carries a MIC.
    pub const MIC_PRESENT: u32 = 0x0000_0002;
    /// The client's target SPN came from an untrusted source.
    pub const UNTRUSTED_SPN_SOURCE: u32 = 0x0000_0004;
}

/// One AV_PAIR.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvPair {
    /// `MsvAvNbComputerName`: the server's NetBIOS computer name.
    NbComputerName(String),
    /// `MsvAvNbDomainName`: the server's NetBIOS domain name.
    NbDomainName(String),
    /// `MsvAvDnsComputerName`: the server's FQDN.
    DnsComputerName(String),
    /// `MsvAvDnsDomainName`: the server's DNS domain.
    DnsDomainName(String),
    /// `MsvAvDnsTreeName`: the forest's DNS name.
    DnsTreeName(String),
    /// `MsvAvFlags` (see [`av_flags`]).
    Flags(u32),
    /// `MsvAvTimestamp`: the server's time in the CHALLENGE.
    Timestamp(FileTime),
    /// `MsvAvSingleHost`: a Single_Host_Data structure, kept raw.
    SingleHost(Vec<u8>),
    /// `MsvAvTargetName`: the SPN the client meant to reach (e.g. `HTTP/host`).
    TargetName(String),
    /// `MsvAvChannelBindings`: MD5 of the gss_channel_bindings_struct.
    ChannelBindings([u8; 16]),
    /// Any other id, kept raw.
    Other {
        /// The AvId.
        id: u16,
        /// The value.
        value: Vec<u8>,
    },
}

impl AvPair {
    /// The AvId of this pair.
    pub fn id(&self) -> u16 {
        match self {
            AvPair::NbComputerName(_) => av_id::NB_COMPUTER_NAME,
            AvPair::NbDomainName(_) => av_id::NB_DOMAIN_NAME,
            AvPair::DnsComputerName(_) => av_id::DNS_COMPUTER_NAME,
            AvPair::DnsDomainName(_) => av_id::DNS_DOMAIN_NAME,
            AvPair::DnsTreeName(_) => av_id::DNS_TREE_NAME,
            AvPair::Flags(_) => av_id::FLAGS,
            AvPair::Timestamp(_) => av_id::TIMESTAMP,
            AvPair::SingleHost(_) => av_id::SINGLE_HOST,
            AvPair::TargetName(_) => av_id::TARGET_NAME,
            AvPair::ChannelBindings(_) => av_id::CHANNEL_BINDINGS,
            AvPair::Other { id, .. } => *id,
        }
    }

    fn value_bytes(&self) -> Vec<u8> {
        match self {
            AvPair::NbComputerName(s)
            | AvPair::NbDomainName(s)
            | AvPair::DnsComputerName(s)
            | AvPair::DnsDomainName(s)
            | AvPair::DnsTreeName(s)
            | AvPair::TargetName(s) => utf16le(s),
            AvPair::Flags(f) => f.to_le_bytes().to_vec(),
            AvPair::Timestamp(t) => t.0.to_le_bytes().to_vec(),
            AvPair::SingleHost(v) | AvPair::Other { value: v, .. } => v.clone(),
            AvPair::ChannelBindings(h) => h.to_vec(),
        }
    }

    fn decode(id: u16, value: &[u8]) -> Result<AvPair, NtlmError> {
        let fixed = |expected: usize| -> Result<(), NtlmError> {
            if value.len() == expected {
                Ok(())
            } else {
                Err(NtlmError::AvPairBadLength {
                    id,
                    len: value.len(),
                    expected,
                })
            }
        };
        Ok(match id {
            av_id::NB_COMPUTER_NAME => {
                AvPair::NbComputerName(decode_utf16le(value, "MsvAvNbComputerName")?)
            }
            av_id::NB_DOMAIN_NAME => {
                AvPair::NbDomainName(decode_utf16le(value, "MsvAvNbDomainName")?)
            }
            av_id::DNS_COMPUTER_NAME => {
                AvPair::DnsComputerName(decode_utf16le(value, "MsvAvDnsComputerName")?)
            }
            av_id::DNS_DOMAIN_NAME => {
                AvPair::DnsDomainName(decode_utf16le(value, "MsvAvDnsDomainName")?)
            }
            av_id::DNS_TREE_NAME => AvPair::DnsTreeName(decode_utf16le(value, "MsvAvDnsTreeName")?),
            av_id::TARGET_NAME => AvPair::TargetName(decode_utf16le(value, "MsvAvTargetName")?),
            av_id::FLAGS => {
                fixed(4)?;
                AvPair::Flags(Reader::new(value).u32("MsvAvFlags")?)
            }
            av_id::TIMESTAMP => {
                fixed(8)?;
                AvPair::Timestamp(FileTime(Reader::new(value).u64("MsvAvTimestamp")?))
            }
            av_id::CHANNEL_BINDINGS => {
                fixed(16)?;
                AvPair::ChannelBindings(Reader::new(value).array("MsvAvChannelBindings")?)
            }
            av_id::SINGLE_HOST => AvPair::SingleHost(value.to_vec()),
            _ => AvPair::Other {
                id,
                value: value.to_vec(),
            },
        })
    }
}

/// An AV_PAIR list, without its terminating `MsvAvEOL` (encoding adds it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AvPairs(pub Vec<AvPair>);

impl AvPairs {
    /// Decodes a list from the start of `input`, up to and including
    /// `MsvAvEOL`. Returns the list and the number of bytes it occupied; what
    /// follows (padding in an NTLMv2 response) is the caller's business.
    ///
    /// Refused: a missing `MsvAvEOL`, an EOL with a non-empty value, more
    /// than [`MAX_AV_PAIRS`] pairs, an id appearing twice, a fixed-size value
    /// of the wrong size, names that are not valid UTF-16.
    pub fn decode(input: &[u8]) -> Result<(AvPairs, usize), NtlmError> {
        let mut r = Reader::new(input);
        let mut pairs: Vec<AvPair> = Vec::new();
        loop {
            if r.remaining() == 0 {
                return Err(NtlmError::AvListUnterminated);
            }
            let id = r.u16("AV_PAIR AvId")?;
            let len = r.u16("AV_PAIR AvLen")?;
            let value = r.take(usize::from(len), "AV_PAIR value")?;
            if id == av_id::EOL {
                if len != 0 {
                    return Err(NtlmError::AvPairBadLength {
                        id,
                        len: usize::from(len),
                        expected: 0,
                    });
                }
                return Ok((AvPairs(pairs), r.position()));
            }
            if pairs.len() >= MAX_AV_PAIRS {
                return Err(NtlmError::TooManyAvPairs { max: MAX_AV_PAIRS });
            }
            if pairs.iter().any(|p| p.id() == id) {
                return Err(NtlmError::DuplicateAvPair { id });
            }
            pairs.push(AvPair::decode(id, value)?);
        }
    }

    /// Encodes the list followed by `MsvAvEOL`.
    pub fn encode(&self) -> Result<Vec<u8>, NtlmError> {
        let mut out = Vec::new();
        for pair in &self.0 {
            let value = pair.value_bytes();
            let len = u16::try_from(value.len()).map_err(|_| NtlmError::FieldTooLong {
                field: "AV_PAIR value",
                len: value.len(),
            })?;
            out.extend_from_slice(&pair.id().to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&value);
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        Ok(out)
    }

    /// The pairs.
    pub fn iter(&self) -> impl Iterator<Item = &AvPair> {
        self.0.iter()
    }

    /// `MsvAvFlags`, or 0 when absent.
    pub fn flags(&self) -> u32 {
        self.0
            .iter()
            .find_map(|p| match p {
                AvPair::Flags(f) => Some(*f),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// `MsvAvTimestamp`.
    pub fn timestamp(&self) -> Option<FileTime> {
        self.0.iter().find_map(|p| match p {
            AvPair::Timestamp(t) => Some(*t),
            _ => None,
        })
    }

    /// `MsvAvTargetName`.
    pub fn target_name(&self) -> Option<&str> {
        self.0.iter().find_map(|p| match p {
            AvPair::TargetName(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// `MsvAvChannelBindings`.
    pub fn channel_bindings(&self) -> Option<[u8; 16]> {
        self.0.iter().find_map(|p| match p {
            AvPair::ChannelBindings(h) => Some(*h),
            _ => None,
        })
    }

    /// `MsvAvSingleHost`, raw.
    pub fn single_host(&self) -> Option<&[u8]> {
        self.0.iter().find_map(|p| match p {
            AvPair::SingleHost(v) => Some(v.as_slice()),
            _ => None,
        })
    }
}
