//! `KERB_VALIDATION_INFO` ([MS-PAC] §2.5) from its NDR type serialization.
//!
//! The PAC logon-info buffer (and MIT's `urn:mspac:logon-info` name
//! attribute, which is that buffer verbatim) is:
//!
//! 1. the type serialization version 1 common header ([MS-RPCE] §2.2.6.1):
//!    `Version` = 1, `Endianness` = 0x10, `CommonHeaderLength` = 8, 4 filler
//!    bytes;
//! 2. the private header (§2.2.6.2): `ObjectBufferLength`, 4 filler bytes;
//! 3. `ObjectBufferLength` bytes of NDR: the referent id of the top-level
//!    unique pointer, the 216-byte fixed part of the structure, then the
//!    targets of its non-null pointers in the order the pointers appear
//!    (C706 §14.3.12: embedded pointers are deferred), each aligned to its
//!    NDR alignment (4 for everything here) from the start of the stream.
//!
//! Deferred targets: `RPC_UNICODE_STRING` buffers are conformant varying
//! arrays (max count = `MaximumLength / 2`, offset 0, actual count =
//! `Length / 2`); `GroupIds`, `ExtraSids` and `ResourceGroupIds` are
//! conformant arrays (max count = the structure's count field); an `RPC_SID`
//! is a conformant structure whose max count, hoisted in front of it, must
//! equal its `SubAuthorityCount`. The `Sid` pointers inside the `ExtraSids`
//! elements are deferred again, after the whole array.

use std::collections::HashSet;

use super::reader::{utf16le, Reader};
use super::{FileTime, PacError, MAX_GROUPS, MAX_PAC_LEN, MAX_STRING_UNITS};
use crate::sid::Sid;

/// `UserFlags` of `KERB_VALIDATION_INFO` ([MS-PAC] §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UserFlags(pub u32);

impl UserFlags {
    /// `LOGON_GUEST` (A): logged on as the guest account (NTLM only).
    pub const GUEST: u32 = 0x0000_0001;
    /// `LOGON_EXTRA_SIDS` (D): `ExtraSids` is populated.
    pub const EXTRA_SIDS: u32 = 0x0000_0020;
    /// `LOGON_RESOURCE_GROUPS` (H): `ResourceGroupIds` is populated.
    pub const RESOURCE_GROUPS: u32 = 0x0000_0200;

    /// Whether every bit of `flag` is set.
    pub fn contains(self, flag: u32) -> bool {
        self.0 & flag == flag
    }
}

/// Group attribute bits (`SE_GROUP_*`, [MS-PAC] §2.2.1).
pub mod group_attributes {
    /// `SE_GROUP_MANDATORY` (A).
    pub const MANDATORY: u32 = 0x0000_0001;
    /// `SE_GROUP_ENABLED_BY_DEFAULT` (B).
    pub const ENABLED_BY_DEFAULT: u32 = 0x0000_0002;
    /// `SE_GROUP_ENABLED` (C).
    pub const ENABLED: u32 = 0x0000_0004;
    /// `SE_GROUP_OWNER` (D).
    pub const OWNER: u32 = 0x0000_0008;
    /// `SE_GROUP_RESOURCE` (E): a domain-local or resource group.
    pub const RESOURCE: u32 = 0x2000_0000;
    /// What a domain group carries by default (mandatory, enabled by
    /// default, enabled), used for the primary group when `GroupIds` does
    /// not list it.
    pub const DEFAULT: u32 = MANDATORY | ENABLED_BY_DEFAULT | ENABLED;
}

/// `GROUP_MEMBERSHIP` ([MS-PAC] §2.2.2): a RID relative to some domain SID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupMembership {
    /// `RelativeId`.
    pub rid: u32,
    /// `Attributes` (see [`group_attributes`]).
    pub attributes: u32,
}

/// `KERB_SID_AND_ATTRIBUTES` ([MS-PAC] §2.2.1), or any SID with attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SidAndAttributes {
    /// The SID.
    pub sid: Sid,
    /// `Attributes` (see [`group_attributes`]).
    pub attributes: u32,
}

/// `KERB_VALIDATION_INFO` ([MS-PAC] §2.5): who the user is and which groups
/// the DC put them in.
///
/// All fields are decoded; the ones that matter for identity are
/// `effective_name`, `logon_domain_name`, `logon_domain_id`, `user_id`,
/// `primary_group_id`, `group_ids`, `extra_sids` and the resource groups.
/// [`LogonInfo::user_sid`] and [`LogonInfo::group_sids`] assemble SIDs.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogonInfo {
    /// `LogonTime`.
    pub logon_time: FileTime,
    /// `LogoffTime` (`0x7FFFFFFFFFFFFFFF` = never).
    pub logoff_time: FileTime,
    /// `KickOffTime` (`0x7FFFFFFFFFFFFFFF` = never).
    pub kick_off_time: FileTime,
    /// `PasswordLastSet`.
    pub password_last_set: FileTime,
    /// `PasswordCanChange`.
    pub password_can_change: FileTime,
    /// `PasswordMustChange`.
    pub password_must_change: FileTime,
    /// `EffectiveName`: the `sAMAccountName`.
    pub effective_name: String,
    /// `FullName`.
    pub full_name: String,
    /// `LogonScript`.
    pub logon_script: String,
    /// `ProfilePath`.
    pub profile_path: String,
    /// `HomeDirectory`.
    pub home_directory: String,
    /// `HomeDirectoryDrive`.
    pub home_directory_drive: String,
    /// `LogonCount`.
    pub logon_count: u16,
    /// `BadPasswordCount`.
    pub bad_password_count: u16,
    /// `UserId`: the user's RID in `logon_domain_id` (0: the user's SID is
    /// the first of `extra_sids`).
    pub user_id: u32,
    /// `PrimaryGroupId`: a RID in `logon_domain_id`.
    pub primary_group_id: u32,
    /// `GroupIds`: group RIDs in `logon_domain_id`.
    pub group_ids: Vec<GroupMembership>,
    /// `UserFlags`.
    pub user_flags: UserFlags,
    /// `UserSessionKey` (zero except for NTLM).
    pub user_session_key: [u8; 16],
    /// `LogonServer`: NetBIOS name of the KDC.
    pub logon_server: String,
    /// `LogonDomainName`: NetBIOS name of the user's domain.
    pub logon_domain_name: String,
    /// `LogonDomainId`: SID of the user's domain.
    pub logon_domain_id: Sid,
    /// `UserAccountControl` (`USER_*` bits of [MS-SAMR] §2.2.1.12).
    pub user_account_control: u32,
    /// `SubAuthStatus`.
    pub sub_auth_status: u32,
    /// `LastSuccessfulILogon`.
    pub last_successful_i_logon: FileTime,
    /// `LastFailedILogon`.
    pub last_failed_i_logon: FileTime,
    /// `FailedILogonCount`.
    pub failed_i_logon_count: u32,
    /// `ExtraSids`: SIDs of groups outside the account domain (universal
    /// groups of other domains, `S-1-18-*` asserted identities, …).
    pub extra_sids: Vec<SidAndAttributes>,
    /// `ResourceGroupDomainSid`, if present.
    pub resource_group_domain_sid: Option<Sid>,
    /// `ResourceGroupIds`: RIDs in `resource_group_domain_sid`.
    pub resource_group_ids: Vec<GroupMembership>,
}

impl LogonInfo {
    /// Decodes the logon-info PAC buffer (type 1): the NDR type
    /// serialization header followed by the serialized
    /// `KERB_VALIDATION_INFO`. This is exactly the value of MIT's
    /// `urn:mspac:logon-info` name attribute.
    pub fn decode(buffer: &[u8]) -> Result<LogonInfo, PacError> {
        if buffer.len() > MAX_PAC_LEN {
            return Err(PacError::TooLong {
                len: buffer.len(),
                max: MAX_PAC_LEN,
            });
        }
        let mut outer = Reader::new(buffer);
        let mut ndr = type_serialization_v1(&mut outer)?;
        let info = Self::decode_ndr(&mut ndr)?;
        trailing_padding(&ndr, "KERB_VALIDATION_INFO")?;
        trailing_padding(&outer, "NDR object buffer")?;
        Ok(info)
    }

    fn decode_ndr(r: &mut Reader<'_>) -> Result<LogonInfo, PacError> {
        if r.ndr_u32("KERB_VALIDATION_INFO pointer")? == 0 {
            return Err(PacError::NullPointer {
                field: "KERB_VALIDATION_INFO",
            });
        }
        // ----- the fixed part, in declaration order --------------------
        let logon_time = filetime(r, "LogonTime")?;
        let logoff_time = filetime(r, "LogoffTime")?;
        let kick_off_time = filetime(r, "KickOffTime")?;
        let password_last_set = filetime(r, "PasswordLastSet")?;
        let password_can_change = filetime(r, "PasswordCanChange")?;
        let password_must_change = filetime(r, "PasswordMustChange")?;
        let effective_name = UnicodeString::header(r, "EffectiveName")?;
        let full_name = UnicodeString::header(r, "FullName")?;
        let logon_script = UnicodeString::header(r, "LogonScript")?;
        let profile_path = UnicodeString::header(r, "ProfilePath")?;
        let home_directory = UnicodeString::header(r, "HomeDirectory")?;
        let home_directory_drive = UnicodeString::header(r, "HomeDirectoryDrive")?;
        let logon_count = r.ndr_u16("LogonCount")?;
        let bad_password_count = r.ndr_u16("BadPasswordCount")?;
        let user_id = r.ndr_u32("UserId")?;
        let primary_group_id = r.ndr_u32("PrimaryGroupId")?;
        let group_count = count(r, "GroupCount")?;
        let group_ids_ptr = r.ndr_u32("GroupIds")?;
        let user_flags = UserFlags(r.ndr_u32("UserFlags")?);
        let user_session_key = r.bytes::<16>("UserSessionKey")?;
        let logon_server = UnicodeString::header(r, "LogonServer")?;
        let logon_domain_name = UnicodeString::header(r, "LogonDomainName")?;
        let logon_domain_id_ptr = r.ndr_u32("LogonDomainId")?;
        let _reserved1 = [r.ndr_u32("Reserved1")?, r.ndr_u32("Reserved1")?];
        let user_account_control = r.ndr_u32("UserAccountControl")?;
        let sub_auth_status = r.ndr_u32("SubAuthStatus")?;
        let last_successful_i_logon = filetime(r, "LastSuccessfulILogon")?;
        let last_failed_i_logon = filetime(r, "LastFailedILogon")?;
        let failed_i_logon_count = r.ndr_u32("FailedILogonCount")?;
        let _reserved3 = r.ndr_u32("Reserved3")?;
        let sid_count = count(r, "SidCount")?;
        let extra_sids_ptr = r.ndr_u32("ExtraSids")?;
        let resource_domain_ptr = r.ndr_u32("ResourceGroupDomainSid")?;
        let resource_group_count = count(r, "ResourceGroupCount")?;
        let resource_group_ids_ptr = r.ndr_u32("ResourceGroupIds")?;

        // ----- deferred pointer targets, in the same order --------------
        let effective_name = effective_name.deferred(r)?;
        let full_name = full_name.deferred(r)?;
        let logon_script = logon_script.deferred(r)?;
        let profile_path = profile_path.deferred(r)?;
        let home_directory = home_directory.deferred(r)?;
        let home_directory_drive = home_directory_drive.deferred(r)?;
        let group_ids = group_array(r, "GroupIds", group_ids_ptr, group_count)?;
        let logon_server = logon_server.deferred(r)?;
        let logon_domain_name = logon_domain_name.deferred(r)?;
        if logon_domain_id_ptr == 0 {
            return Err(PacError::NullPointer {
                field: "LogonDomainId",
            });
        }
        let logon_domain_id = rpc_sid(r, "LogonDomainId")?;
        let extra_sids = extra_sids(r, extra_sids_ptr, sid_count)?;
        let resource_group_domain_sid = if resource_domain_ptr == 0 {
            None
        } else {
            Some(rpc_sid(r, "ResourceGroupDomainSid")?)
        };
        let resource_group_ids = group_array(
            r,
            "ResourceGroupIds",
            resource_group_ids_ptr,
            resource_group_count,
        )?;

        Ok(LogonInfo {
            logon_time,
            logoff_time,
            kick_off_time,
            password_last_set,
            password_can_change,
            password_must_change,
            effective_name,
            full_name,
            logon_script,
            profile_path,
            home_directory,
            home_directory_drive,
            logon_count,
            bad_password_count,
            user_id,
            primary_group_id,
            group_ids,
            user_flags,
            user_session_key,
            logon_server,
            logon_domain_name,
            logon_domain_id,
            user_account_control,
            sub_auth_status,
            last_successful_i_logon,
            last_failed_i_logon,
            failed_i_logon_count,
            extra_sids,
            resource_group_domain_sid,
            resource_group_ids,
        })
    }

    /// The user's SID: `LogonDomainId` + `UserId`, or, when `UserId` is 0,
    /// the first of `ExtraSids` ([MS-PAC] §2.5). `None` if neither exists
    /// (or the domain SID is already 15 sub-authorities long).
    pub fn user_sid(&self) -> Option<Sid> {
        if self.user_id == 0 {
            self.extra_sids.first().map(|s| s.sid)
        } else {
            self.logon_domain_id.with_rid(self.user_id).ok()
        }
    }

    /// `DOMAIN\user` from `LogonDomainName` and `EffectiveName` (what
    /// Windows calls the down-level logon name).
    pub fn down_level_logon_name(&self) -> String {
        format!("{}\\{}", self.logon_domain_name, self.effective_name)
    }

    /// Every group the PAC puts the user in, with its attributes,
    /// deduplicated (first occurrence wins), in this order:
    ///
    /// 1. the primary group (`LogonDomainId` + `PrimaryGroupId`; its
    ///    attributes from `GroupIds` if listed there, else
    ///    [`group_attributes::DEFAULT`]); skipped if `PrimaryGroupId` is 0;
    /// 2. `GroupIds` (relative to `LogonDomainId`), in PAC order;
    /// 3. `ExtraSids`, in PAC order (without the first one when `UserId` is
    ///    0, since that one is the user);
    /// 4. `ResourceGroupIds` relative to `ResourceGroupDomainSid` (when that
    ///    SID is present), in PAC order.
    ///
    /// Lists are taken as the DC sent them whatever `UserFlags` says (the
    /// `EXTRA_SIDS` / `RESOURCE_GROUPS` bits only announce them). SIDs that
    /// cannot be formed (a domain SID already 15 sub-authorities long) are
    /// skipped.
    pub fn groups(&self) -> Vec<SidAndAttributes> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut push = |sid: Sid, attributes: u32| {
            if seen.insert(sid) {
                out.push(SidAndAttributes { sid, attributes });
            }
        };
        if self.primary_group_id != 0 {
            if let Ok(sid) = self.logon_domain_id.with_rid(self.primary_group_id) {
                let attributes = self
                    .group_ids
                    .iter()
                    .find(|g| g.rid == self.primary_group_id)
                    .map_or(group_attributes::DEFAULT, |g| g.attributes);
                push(sid, attributes);
            }
        }
        for g in &self.group_ids {
            if let Ok(sid) = self.logon_domain_id.with_rid(g.rid) {
                push(sid, g.attributes);
            }
        }
        let skip = usize::from(self.user_id == 0);
        for s in self.extra_sids.iter().skip(skip) {
            push(s.sid, s.attributes);
        }
        if let Some(domain) = &self.resource_group_domain_sid {
            for g in &self.resource_group_ids {
                if let Ok(sid) = domain.with_rid(g.rid) {
                    push(sid, g.attributes);
                }
            }
        }
        out
    }

    /// The SIDs of [`LogonInfo::groups`], in the same order.
    pub fn group_sids(&self) -> Vec<Sid> {
        self.groups().into_iter().map(|g| g.sid).collect()
    }
}

/// Reads the type serialization version 1 headers and returns a reader
/// bounded to the object buffer; `r` is left after it.
fn type_serialization_v1<'a>(r: &mut Reader<'a>) -> Result<Reader<'a>, PacError> {
    let version = r.u8("NDR common header")?;
    if version != 1 {
        return Err(PacError::SerializationVersion { found: version });
    }
    let endianness = r.u8("NDR common header")?;
    if endianness != 0x10 {
        return Err(PacError::UnsupportedEndianness { found: endianness });
    }
    let header_len = r.u16("NDR common header")?;
    if header_len != 8 {
        return Err(PacError::CommonHeaderLength { found: header_len });
    }
    let _filler = r.u32("NDR common header")?;
    let object_len = r.u32("NDR private header")?;
    let _filler = r.u32("NDR private header")?;
    let object_len = usize::try_from(object_len).unwrap_or(usize::MAX);
    // The object buffer starts 16 bytes into the buffer, itself 8-aligned in
    // the PAC, so NDR alignment counted from the start of this buffer is the
    // alignment the encoder used.
    r.sub(object_len, "NDR object buffer")
}

/// After a structure, at most 7 bytes of alignment padding may remain.
fn trailing_padding(r: &Reader<'_>, what: &'static str) -> Result<(), PacError> {
    let len = r.remaining();
    if len >= 8 {
        return Err(PacError::TrailingData { what, len });
    }
    Ok(())
}

fn filetime(r: &mut Reader<'_>, what: &'static str) -> Result<FileTime, PacError> {
    let low = r.ndr_u32(what)?;
    let high = r.ndr_u32(what)?;
    Ok(FileTime((u64::from(high) << 32) | u64::from(low)))
}

/// A count field, bounded by [`MAX_GROUPS`] as soon as it is read.
fn count(r: &mut Reader<'_>, field: &'static str) -> Result<u32, PacError> {
    let n = r.ndr_u32(field)?;
    if usize::try_from(n).map_or(true, |n| n > MAX_GROUPS) {
        return Err(PacError::CountTooLarge {
            field,
            count: n,
            max: MAX_GROUPS,
        });
    }
    Ok(n)
}

/// The fixed part of an `RPC_UNICODE_STRING`, checked; its buffer comes
/// later (deferred).
struct UnicodeString {
    field: &'static str,
    length: u16,
    maximum_length: u16,
    pointer: u32,
}

impl UnicodeString {
    fn header(r: &mut Reader<'_>, field: &'static str) -> Result<Self, PacError> {
        let length = r.ndr_u16(field)?;
        let maximum_length = r.ndr_u16(field)?;
        let pointer = r.ndr_u32(field)?;
        if length % 2 != 0 {
            return Err(PacError::OddStringLength {
                field,
                len: usize::from(length),
            });
        }
        if length > maximum_length {
            return Err(PacError::StringLengthExceedsMaximum {
                field,
                length,
                maximum_length,
            });
        }
        let units = usize::from(length / 2);
        if units > MAX_STRING_UNITS {
            return Err(PacError::StringTooLong {
                field,
                units,
                max: MAX_STRING_UNITS,
            });
        }
        if pointer == 0 && length != 0 {
            return Err(PacError::NullPointerWithLength { field, length });
        }
        Ok(UnicodeString {
            field,
            length,
            maximum_length,
            pointer,
        })
    }

    /// Reads the conformant varying `WCHAR` array the pointer refers to.
    fn deferred(self, r: &mut Reader<'_>) -> Result<String, PacError> {
        let field = self.field;
        if self.pointer == 0 {
            return Ok(String::new());
        }
        let max_count = r.ndr_u32(field)?;
        let expected_max = u32::from(self.maximum_length / 2);
        if max_count != expected_max {
            return Err(PacError::ConformanceMismatch {
                field,
                expected: expected_max,
                found: max_count,
            });
        }
        let offset = r.ndr_u32(field)?;
        if offset != 0 {
            return Err(PacError::NonZeroVarianceOffset { field, offset });
        }
        let actual = r.ndr_u32(field)?;
        let expected_actual = u32::from(self.length / 2);
        if actual != expected_actual {
            return Err(PacError::VarianceMismatch {
                field,
                expected: expected_actual,
                found: actual,
            });
        }
        let bytes = r.take(usize::from(self.length), field)?;
        utf16le(bytes, field)
    }
}

/// A conformant array of `GROUP_MEMBERSHIP`.
fn group_array(
    r: &mut Reader<'_>,
    field: &'static str,
    pointer: u32,
    count: u32,
) -> Result<Vec<GroupMembership>, PacError> {
    if pointer == 0 {
        if count != 0 {
            return Err(PacError::NullArrayWithCount { field, count });
        }
        return Ok(Vec::new());
    }
    conformance(r, field, count)?;
    // `count` is at most MAX_GROUPS (checked when it was read).
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for _ in 0..count {
        let rid = r.ndr_u32(field)?;
        let attributes = r.ndr_u32(field)?;
        out.push(GroupMembership { rid, attributes });
    }
    Ok(out)
}

/// A conformant array of `KERB_SID_AND_ATTRIBUTES`, then its deferred SIDs.
fn extra_sids(
    r: &mut Reader<'_>,
    pointer: u32,
    count: u32,
) -> Result<Vec<SidAndAttributes>, PacError> {
    const FIELD: &str = "ExtraSids";
    if pointer == 0 {
        if count != 0 {
            return Err(PacError::NullArrayWithCount {
                field: FIELD,
                count,
            });
        }
        return Ok(Vec::new());
    }
    conformance(r, FIELD, count)?;
    let capacity = usize::try_from(count).unwrap_or(0);
    let mut entries = Vec::with_capacity(capacity);
    for _ in 0..count {
        let sid_pointer = r.ndr_u32(FIELD)?;
        let attributes = r.ndr_u32(FIELD)?;
        if sid_pointer == 0 {
            return Err(PacError::NullPointer {
                field: "ExtraSids[].Sid",
            });
        }
        entries.push(attributes);
    }
    let mut out = Vec::with_capacity(capacity);
    for attributes in entries {
        let sid = rpc_sid(r, "ExtraSids[].Sid")?;
        out.push(SidAndAttributes { sid, attributes });
    }
    Ok(out)
}

/// The max count of a conformant array, which must equal `count`.
fn conformance(r: &mut Reader<'_>, field: &'static str, count: u32) -> Result<(), PacError> {
    let max_count = r.ndr_u32(field)?;
    if max_count != count {
        return Err(PacError::ConformanceMismatch {
            field,
            expected: count,
            found: max_count,
        });
    }
    Ok(())
}

/// An NDR `RPC_SID` ([MS-DTYP] §2.4.2.3): the conformance (sub-authority
/// count) hoisted in front, then the binary SID.
fn rpc_sid(r: &mut Reader<'_>, field: &'static str) -> Result<Sid, PacError> {
    let max_count = r.ndr_u32(field)?;
    let (sid, used) = Sid::decode_prefix(r.rest()).map_err(PacError::sid(field))?;
    r.take(used, field)?;
    let sub_count = u32::try_from(sid.sub_authorities().len()).unwrap_or(u32::MAX);
    if max_count != sub_count {
        return Err(PacError::ConformanceMismatch {
            field,
            expected: sub_count,
            found: max_count,
        });
    }
    Ok(sid)
}
