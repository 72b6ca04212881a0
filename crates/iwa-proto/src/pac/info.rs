//! The PAC buffers that are plain little-endian structures (not NDR):
//! `PAC_CLIENT_INFO` (§2.7), `PAC_SIGNATURE_DATA` (§2.8), `UPN_DNS_INFO`
//! (§2.10) and `PAC_REQUESTOR_SID` (§2.15).

use super::reader::{utf16le, Reader};
use super::{FileTime, PacError, MAX_STRING_UNITS};
use crate::sid::Sid;

/// `PAC_CLIENT_INFO` ([MS-PAC] §2.7): the client name and the TGT's
/// authentication time, which tie the PAC to the ticket's client.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// `ClientId`: the initial TGT's authtime.
    pub client_id: FileTime,
    /// `Name`: the client principal name without the realm.
    pub name: String,
}

impl ClientInfo {
    /// Decodes a client-info buffer (type 10).
    pub fn decode(buffer: &[u8]) -> Result<ClientInfo, PacError> {
        let mut r = Reader::new(buffer);
        let client_id = FileTime(r.u64("PAC_CLIENT_INFO.ClientId")?);
        let name_len = r.u16("PAC_CLIENT_INFO.NameLength")?;
        let name = string(&mut r, usize::from(name_len), "PAC_CLIENT_INFO.Name")?;
        padding_only(&r, "PAC_CLIENT_INFO")?;
        Ok(ClientInfo { client_id, name })
    }
}

/// `PAC_SIGNATURE_DATA` ([MS-PAC] §2.8), kept raw: verifying it needs keys,
/// and MIT does that before it marks the PAC authenticated.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacSignature {
    /// `SignatureType` (a Kerberos checksum type, see the constants).
    pub signature_type: u32,
    /// `Signature`.
    pub signature: Vec<u8>,
    /// `RODCIdentifier`, present when a read-only DC issued the ticket.
    pub rodc_identifier: Option<u16>,
}

impl PacSignature {
    /// `KERB_CHECKSUM_HMAC_MD5` (-138): 16-byte signature.
    pub const HMAC_MD5: u32 = 0xFFFF_FF76;
    /// `HMAC_SHA1_96_AES128` (15): 12-byte signature.
    pub const HMAC_SHA1_96_AES128: u32 = 15;
    /// `HMAC_SHA1_96_AES256` (16): 12-byte signature.
    pub const HMAC_SHA1_96_AES256: u32 = 16;

    /// The signature size of a known `SignatureType`.
    pub fn signature_len(signature_type: u32) -> Option<usize> {
        match signature_type {
            Self::HMAC_MD5 => Some(16),
            Self::HMAC_SHA1_96_AES128 | Self::HMAC_SHA1_96_AES256 => Some(12),
            _ => None,
        }
    }

    /// Decodes a signature buffer (types 6, 7, 16, 19). For a known
    /// `SignatureType` the rest must be the signature, optionally followed
    /// by the 2-byte RODC identifier; for an unknown one, the rest is the
    /// signature.
    pub fn decode(buffer: &[u8]) -> Result<PacSignature, PacError> {
        let mut r = Reader::new(buffer);
        let signature_type = r.u32("PAC_SIGNATURE_DATA.SignatureType")?;
        let rest = r.rest();
        let Some(expected) = Self::signature_len(signature_type) else {
            return Ok(PacSignature {
                signature_type,
                signature: rest.to_vec(),
                rodc_identifier: None,
            });
        };
        let mismatch = PacError::SignatureLength {
            signature_type,
            expected,
            found: rest.len(),
        };
        let signature = r
            .take(expected, "PAC_SIGNATURE_DATA.Signature")
            .map_err(|_| mismatch.clone())?;
        let rodc_identifier = match r.remaining() {
            0 => None,
            2 => Some(r.u16("PAC_SIGNATURE_DATA.RODCIdentifier")?),
            _ => return Err(mismatch),
        };
        Ok(PacSignature {
            signature_type,
            signature: signature.to_vec(),
            rodc_identifier,
        })
    }
}

/// `UPN_DNS_INFO` ([MS-PAC] §2.10): the user principal name and DNS domain,
/// and, in the extended form (flag `S`), the SAM account name and user SID.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpnDnsInfo {
    /// The UPN (`user@example.com`).
    pub upn: String,
    /// The DNS name of the user's domain.
    pub dns_domain_name: String,
    /// `Flags` (see the constants).
    pub flags: u32,
    /// The SAM account name, when flag `S` is set.
    pub sam_name: Option<String>,
    /// The user's SID, when flag `S` is set.
    pub sid: Option<Sid>,
}

impl UpnDnsInfo {
    /// `U`: the account has no `userPrincipalName`; `upn` was constructed
    /// from the account name and the DNS domain.
    pub const UPN_CONSTRUCTED: u32 = 0x0000_0001;
    /// `S`: the structure carries the SAM name and SID fields.
    pub const EXTENDED: u32 = 0x0000_0002;

    /// Decodes a UPN/DNS-info buffer (type 12). Every (length, offset) pair
    /// must lie inside the buffer and after the fixed header.
    pub fn decode(buffer: &[u8]) -> Result<UpnDnsInfo, PacError> {
        let mut r = Reader::new(buffer);
        let upn = FieldRef::read(&mut r, "UPN_DNS_INFO.Upn")?;
        let dns = FieldRef::read(&mut r, "UPN_DNS_INFO.DnsDomainName")?;
        let flags = r.u32("UPN_DNS_INFO.Flags")?;
        let extended = if flags & Self::EXTENDED != 0 {
            let sam = FieldRef::read(&mut r, "UPN_DNS_INFO.SamName")?;
            let sid = FieldRef::read(&mut r, "UPN_DNS_INFO.Sid")?;
            Some((sam, sid))
        } else {
            None
        };
        let header_len = r.position();
        let upn = utf16_field(buffer, header_len, upn)?;
        let dns_domain_name = utf16_field(buffer, header_len, dns)?;
        let (sam_name, sid) = match extended {
            Some((sam, sid)) => {
                let sam = utf16_field(buffer, header_len, sam)?;
                let sid_bytes = sid.resolve(buffer, header_len)?;
                let sid = if sid_bytes.is_empty() {
                    None
                } else {
                    Some(Sid::from_bytes(sid_bytes).map_err(PacError::sid(sid.name))?)
                };
                (Some(sam), sid)
            }
            None => (None, None),
        };
        Ok(UpnDnsInfo {
            upn,
            dns_domain_name,
            flags,
            sam_name,
            sid,
        })
    }
}

/// A (length, offset) pair of `UPN_DNS_INFO`.
#[derive(Clone, Copy)]
struct FieldRef {
    name: &'static str,
    len: u16,
    offset: u16,
}

impl FieldRef {
    fn read(r: &mut Reader<'_>, name: &'static str) -> Result<FieldRef, PacError> {
        let len = r.u16(name)?;
        let offset = r.u16(name)?;
        Ok(FieldRef { name, len, offset })
    }

    fn resolve<'a>(&self, buffer: &'a [u8], header_len: usize) -> Result<&'a [u8], PacError> {
        if self.len == 0 {
            return Ok(&[]);
        }
        let start = usize::from(self.offset);
        if start < header_len {
            return Err(PacError::FieldOverlapsHeader {
                field: self.name,
                offset: self.offset,
                header_len,
            });
        }
        buffer
            .get(start..start + usize::from(self.len))
            .ok_or(PacError::FieldOutOfBounds {
                field: self.name,
                offset: self.offset,
                len: self.len,
                buffer_len: buffer.len(),
            })
    }
}

fn utf16_field(buffer: &[u8], header_len: usize, field: FieldRef) -> Result<String, PacError> {
    let bytes = field.resolve(buffer, header_len)?;
    check_units(bytes.len(), field.name)?;
    utf16le(bytes, field.name)
}

fn check_units(byte_len: usize, field: &'static str) -> Result<(), PacError> {
    let units = byte_len / 2;
    if units > MAX_STRING_UNITS {
        return Err(PacError::StringTooLong {
            field,
            units,
            max: MAX_STRING_UNITS,
        });
    }
    Ok(())
}

fn string(r: &mut Reader<'_>, byte_len: usize, field: &'static str) -> Result<String, PacError> {
    check_units(byte_len, field)?;
    let bytes = r.take(byte_len, field)?;
    utf16le(bytes, field)
}

/// At most 7 bytes (alignment padding) may follow a structure in its buffer.
fn padding_only(r: &Reader<'_>, what: &'static str) -> Result<(), PacError> {
    let len = r.remaining();
    if len >= 8 {
        return Err(PacError::TrailingData { what, len });
    }
    Ok(())
}

/// Decodes a `PAC_REQUESTOR_SID` buffer (type 18): one binary SID.
pub(crate) fn requestor_sid(buffer: &[u8]) -> Result<Sid, PacError> {
    let (sid, used) = Sid::decode_prefix(buffer).map_err(PacError::sid("PAC_REQUESTOR_SID"))?;
    let len = buffer.len().saturating_sub(used);
    if len >= 8 {
        return Err(PacError::TrailingData {
            what: "PAC_REQUESTOR_SID",
            len,
        });
    }
    Ok(sid)
}
