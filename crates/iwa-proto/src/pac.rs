//! The Kerberos PAC ([MS-PAC]): `PACTYPE` and its buffers, and the NDR
//! `KERB_VALIDATION_INFO` that carries the user's groups.
//!
//! Two entry points, matching what MIT krb5 hands out as GSS name
//! attributes once it has verified the PAC's server signature:
//!
//! - [`LogonInfo::decode`] takes the logon-info buffer (type 1) as it sits in
//!   the PAC, NDR type serialization header included. That is the value of
//!   `urn:mspac:logon-info`.
//! - [`PacData::decode`] takes a whole PAC (`PACTYPE`, [MS-PAC] §2.3), the
//!   value of `urn:mspac:`, checks the buffer table and decodes the buffers
//!   it knows. [`info_buffers`] is the table alone, with each buffer's bytes.
//!
//! Nothing here verifies signatures: the signature buffers are exposed raw
//! ([`PacSignature`]) and a caller must only trust a PAC that MIT marked
//! authenticated.
//!
//! Bounds (a hostile PAC cannot make us allocate much or loop long): input
//! at most [`MAX_PAC_LEN`] bytes, at most [`MAX_BUFFERS`] buffers, at most
//! [`MAX_GROUPS`] entries in each of `GroupIds`, `ExtraSids` and
//! `ResourceGroupIds` (checked when the count is read, before anything is
//! allocated), strings at most [`MAX_STRING_UNITS`] UTF-16 code units, SIDs
//! at most 15 sub-authorities. Every read goes through one bounded reader
//! whose sub-readers cannot run past the buffer they were cut from.

mod error;
mod info;
mod logon_info;
mod reader;

pub use crate::ntlm::FileTime;
pub use crate::sid::{Sid, SidError};
pub use error::PacError;
pub use info::{ClientInfo, PacSignature, UpnDnsInfo};
pub use logon_info::{group_attributes, GroupMembership, LogonInfo, SidAndAttributes, UserFlags};

use reader::Reader;

/// Largest PAC (or PAC buffer) accepted: 1 MiB. Real PACs are a few KiB;
/// one with 1,024 groups and 1,024 extra SIDs is under 64 KiB.
pub const MAX_PAC_LEN: usize = 1024 * 1024;

/// Most buffers a PAC may declare (`cBuffers`); real ones have 4 to 10.
pub const MAX_BUFFERS: usize = 1024;

/// Most entries in each of `GroupIds`, `ExtraSids` and `ResourceGroupIds`
/// (a Windows token holds at most 1,024 SIDs in all).
pub const MAX_GROUPS: usize = 1024;

/// Longest string accepted, in UTF-16 code units (2 KiB of UTF-16; AD's
/// longest name attribute, `userPrincipalName`, is 1,024 characters).
pub const MAX_STRING_UNITS: usize = 1024;

/// `ulType` values of `PAC_INFO_BUFFER` ([MS-PAC] §2.4).
pub mod buffer_type {
    /// Logon information: `KERB_VALIDATION_INFO` (§2.5).
    pub const LOGON_INFO: u32 = 1;
    /// Credentials information (§2.6).
    pub const CREDENTIALS_INFO: u32 = 2;
    /// Server signature (§2.8).
    pub const SERVER_CHECKSUM: u32 = 6;
    /// KDC (privilege server) signature (§2.8).
    pub const KDC_CHECKSUM: u32 = 7;
    /// Client name and ticket information (§2.7).
    pub const CLIENT_INFO: u32 = 10;
    /// Constrained delegation information (§2.9).
    pub const DELEGATION_INFO: u32 = 11;
    /// UPN and DNS information (§2.10).
    pub const UPN_DNS_INFO: u32 = 12;
    /// Client claims (§2.11).
    pub const CLIENT_CLAIMS_INFO: u32 = 13;
    /// Device information (§2.12).
    pub const DEVICE_INFO: u32 = 14;
    /// Device claims (§2.13).
    pub const DEVICE_CLAIMS_INFO: u32 = 15;
    /// Ticket signature (§2.8.2).
    pub const TICKET_CHECKSUM: u32 = 16;
    /// PAC attributes (§2.14).
    pub const ATTRIBUTES_INFO: u32 = 17;
    /// Requestor SID (§2.15).
    pub const REQUESTOR_SID: u32 = 18;
    /// Extended KDC signature (§2.8.3).
    pub const EXTENDED_KDC_CHECKSUM: u32 = 19;
    /// Requestor GUID (§2.16).
    pub const REQUESTOR_GUID: u32 = 20;
}

/// One entry of the `PAC_INFO_BUFFER` array with the bytes it points at,
/// after [`info_buffers`] checked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacInfoBuffer<'a> {
    /// `ulType`.
    pub buffer_type: u32,
    /// `Offset` from the start of the PAC.
    pub offset: u64,
    /// The `cbBufferSize` bytes at `Offset`.
    pub data: &'a [u8],
}

/// Reads `PACTYPE` and its `PAC_INFO_BUFFER` array ([MS-PAC] §2.3, §2.4)
/// and returns each buffer with its bytes, in array order.
///
/// Checks: `Version` is 0; `cBuffers` ≤ [`MAX_BUFFERS`] and the array fits;
/// every offset is a multiple of 8, at or after the end of the array, and
/// its buffer ends inside the PAC; no two non-empty buffers overlap. Gaps
/// and bytes after the last buffer are allowed (padding).
pub fn info_buffers(pac: &[u8]) -> Result<Vec<PacInfoBuffer<'_>>, PacError> {
    if pac.len() > MAX_PAC_LEN {
        return Err(PacError::TooLong {
            len: pac.len(),
            max: MAX_PAC_LEN,
        });
    }
    let mut r = Reader::new(pac);
    let count = r.u32("PACTYPE.cBuffers")?;
    let version = r.u32("PACTYPE.Version")?;
    if version != 0 {
        return Err(PacError::UnsupportedVersion { found: version });
    }
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    if n > MAX_BUFFERS {
        return Err(PacError::TooManyBuffers {
            count,
            max: MAX_BUFFERS,
        });
    }
    // n ≤ 1024, so this cannot overflow.
    let header_len = 8 + 16 * n;
    let mut table = r.sub(16 * n, "PAC_INFO_BUFFER array")?;
    let mut out = Vec::with_capacity(n);
    for index in 0..n {
        let buffer_type = table.u32("PAC_INFO_BUFFER.ulType")?;
        let size = table.u32("PAC_INFO_BUFFER.cbBufferSize")?;
        let offset = table.u64("PAC_INFO_BUFFER.Offset")?;
        if offset % 8 != 0 {
            return Err(PacError::BufferMisaligned {
                index,
                buffer_type,
                offset,
            });
        }
        let out_of_bounds = PacError::BufferOutOfBounds {
            index,
            buffer_type,
            offset,
            size,
            pac_len: pac.len(),
        };
        let start = usize::try_from(offset).map_err(|_| out_of_bounds.clone())?;
        if start < header_len {
            return Err(PacError::BufferOverlapsHeader {
                index,
                buffer_type,
                offset,
                header_len,
            });
        }
        let len = usize::try_from(size).map_err(|_| out_of_bounds.clone())?;
        let end = start.checked_add(len).ok_or(out_of_bounds.clone())?;
        let data = pac.get(start..end).ok_or(out_of_bounds)?;
        out.push(PacInfoBuffer {
            buffer_type,
            offset,
            data,
        });
    }
    check_no_overlap(&out)?;
    Ok(out)
}

fn check_no_overlap(buffers: &[PacInfoBuffer<'_>]) -> Result<(), PacError> {
    let mut spans: Vec<(u64, u64, usize)> = buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.data.is_empty())
        .map(|(i, b)| {
            // data.len() ≤ MAX_PAC_LEN, and offset + len was checked.
            let len = u64::try_from(b.data.len()).unwrap_or(u64::MAX);
            (b.offset, b.offset.saturating_add(len), i)
        })
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if let [(_, a_end, a), (b_start, _, b)] = pair {
            if b_start < a_end {
                return Err(PacError::BuffersOverlap {
                    first: *a.min(b),
                    second: *a.max(b),
                });
            }
        }
    }
    Ok(())
}

/// A decoded PAC buffer.
///
/// For each known type only the first buffer is decoded ([MS-PAC] §2.4:
/// additional ones "MUST be ignored"); later ones, and buffers of types this
/// crate does not decode, are [`PacBuffer::Other`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacBuffer {
    /// Type 1.
    LogonInfo(Box<LogonInfo>),
    /// Type 10.
    ClientInfo(ClientInfo),
    /// Type 12.
    UpnDnsInfo(UpnDnsInfo),
    /// Type 6: the server signature.
    ServerChecksum(PacSignature),
    /// Type 7: the KDC signature.
    KdcChecksum(PacSignature),
    /// Type 16: the ticket signature.
    TicketChecksum(PacSignature),
    /// Type 19: the extended KDC signature.
    ExtendedKdcChecksum(PacSignature),
    /// Type 18: the SID of the principal that requested the ticket.
    RequestorSid(Sid),
    /// Anything else, raw.
    Other {
        /// `ulType`.
        buffer_type: u32,
        /// The buffer's bytes.
        data: Vec<u8>,
    },
}

impl PacBuffer {
    /// The `ulType` this buffer had.
    pub fn buffer_type(&self) -> u32 {
        match self {
            PacBuffer::LogonInfo(_) => buffer_type::LOGON_INFO,
            PacBuffer::ClientInfo(_) => buffer_type::CLIENT_INFO,
            PacBuffer::UpnDnsInfo(_) => buffer_type::UPN_DNS_INFO,
            PacBuffer::ServerChecksum(_) => buffer_type::SERVER_CHECKSUM,
            PacBuffer::KdcChecksum(_) => buffer_type::KDC_CHECKSUM,
            PacBuffer::TicketChecksum(_) => buffer_type::TICKET_CHECKSUM,
            PacBuffer::ExtendedKdcChecksum(_) => buffer_type::EXTENDED_KDC_CHECKSUM,
            PacBuffer::RequestorSid(_) => buffer_type::REQUESTOR_SID,
            PacBuffer::Other { buffer_type, .. } => *buffer_type,
        }
    }

    fn decode(buffer_type: u32, data: &[u8]) -> Result<PacBuffer, PacError> {
        Ok(match buffer_type {
            buffer_type::LOGON_INFO => PacBuffer::LogonInfo(Box::new(LogonInfo::decode(data)?)),
            buffer_type::CLIENT_INFO => PacBuffer::ClientInfo(ClientInfo::decode(data)?),
            buffer_type::UPN_DNS_INFO => PacBuffer::UpnDnsInfo(UpnDnsInfo::decode(data)?),
            buffer_type::SERVER_CHECKSUM => PacBuffer::ServerChecksum(PacSignature::decode(data)?),
            buffer_type::KDC_CHECKSUM => PacBuffer::KdcChecksum(PacSignature::decode(data)?),
            buffer_type::TICKET_CHECKSUM => PacBuffer::TicketChecksum(PacSignature::decode(data)?),
            buffer_type::EXTENDED_KDC_CHECKSUM => {
                PacBuffer::ExtendedKdcChecksum(PacSignature::decode(data)?)
            }
            buffer_type::REQUESTOR_SID => PacBuffer::RequestorSid(info::requestor_sid(data)?),
            _ => PacBuffer::Other {
                buffer_type,
                data: data.to_vec(),
            },
        })
    }

    fn is_decoded(buffer_type: u32) -> bool {
        matches!(
            buffer_type,
            buffer_type::LOGON_INFO
                | buffer_type::CLIENT_INFO
                | buffer_type::UPN_DNS_INFO
                | buffer_type::SERVER_CHECKSUM
                | buffer_type::KDC_CHECKSUM
                | buffer_type::TICKET_CHECKSUM
                | buffer_type::EXTENDED_KDC_CHECKSUM
                | buffer_type::REQUESTOR_SID
        )
    }
}

/// A whole PAC (`PACTYPE`, [MS-PAC] §2.3) with its buffers decoded.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacData {
    /// The buffers, in the order of the `PAC_INFO_BUFFER` array.
    pub buffers: Vec<PacBuffer>,
}

impl PacData {
    /// Decodes a PAC: the buffer table ([`info_buffers`]) and the first
    /// buffer of each known type. A known buffer that does not decode fails
    /// the whole PAC ([`PacError::InBuffer`] names it).
    pub fn decode(pac: &[u8]) -> Result<PacData, PacError> {
        let table = info_buffers(pac)?;
        let mut seen: Vec<u32> = Vec::new();
        let mut buffers = Vec::with_capacity(table.len());
        for (index, entry) in table.iter().enumerate() {
            let first =
                PacBuffer::is_decoded(entry.buffer_type) && !seen.contains(&entry.buffer_type);
            let buffer = if first {
                seen.push(entry.buffer_type);
                PacBuffer::decode(entry.buffer_type, entry.data).map_err(|e| {
                    PacError::InBuffer {
                        index,
                        buffer_type: entry.buffer_type,
                        source: Box::new(e),
                    }
                })?
            } else {
                PacBuffer::Other {
                    buffer_type: entry.buffer_type,
                    data: entry.data.to_vec(),
                }
            };
            buffers.push(buffer);
        }
        Ok(PacData { buffers })
    }

    /// The logon information (the first type-1 buffer), if any.
    pub fn logon_info(&self) -> Option<&LogonInfo> {
        self.buffers.iter().find_map(|b| match b {
            PacBuffer::LogonInfo(l) => Some(&**l),
            _ => None,
        })
    }

    /// The client information, if any.
    pub fn client_info(&self) -> Option<&ClientInfo> {
        self.buffers.iter().find_map(|b| match b {
            PacBuffer::ClientInfo(c) => Some(c),
            _ => None,
        })
    }

    /// The UPN and DNS information, if any.
    pub fn upn_dns_info(&self) -> Option<&UpnDnsInfo> {
        self.buffers.iter().find_map(|b| match b {
            PacBuffer::UpnDnsInfo(u) => Some(u),
            _ => None,
        })
    }

    /// The server signature, if any.
    pub fn server_checksum(&self) -> Option<&PacSignature> {
        self.buffers.iter().find_map(|b| match b {
            PacBuffer::ServerChecksum(s) => Some(s),
            _ => None,
        })
    }

    /// The KDC signature, if any.
    pub fn kdc_checksum(&self) -> Option<&PacSignature> {
        self.buffers.iter().find_map(|b| match b {
            PacBuffer::KdcChecksum(s) => Some(s),
            _ => None,
        })
    }

    /// The requestor SID, if any.
    pub fn requestor_sid(&self) -> Option<&Sid> {
        self.buffers.iter().find_map(|b| match b {
            PacBuffer::RequestorSid(s) => Some(s),
            _ => None,
        })
    }
}
