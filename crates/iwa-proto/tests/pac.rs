//! MS-PAC decoding: the [MS-PAC] §3 example PAC reproduced field by field
//! (and re-encoded byte for byte by the test encoder below), hand-built
//! valid and malformed PACs, and property tests (encode → decode agreement,
//! no panic on random or mutated input).
//!
//! `enc` is a small test-only NDR encoder. It writes what Windows writes:
//! referent ids 0x00020000, 0x00020004, … in pointer order, deferred
//! pointer targets after the structure, 4-byte alignment from the start of
//! the NDR stream, zero padding; each knob (`length`, `max_count`, `null`,
//! `conformance`, …) lets a test write one field wrong.

use iwa_proto::pac::{
    buffer_type, group_attributes, info_buffers, ClientInfo, FileTime, LogonInfo, PacBuffer,
    PacData, PacError, PacSignature, Sid, SidError, UpnDnsInfo, UserFlags, MAX_GROUPS,
    MAX_STRING_UNITS,
};
use proptest::prelude::*;

const SPEC_PAC: &[u8] = include_bytes!("vectors/pac_ms_pac_section3.bin");

#[allow(dead_code)]
mod enc {
    use iwa_proto::pac::Sid;

    /// An NDR stream being written.
    pub struct Ndr {
        pub buf: Vec<u8>,
        next_ref: u32,
    }

    impl Ndr {
        pub fn new() -> Self {
            Ndr {
                buf: Vec::new(),
                next_ref: 0x0002_0000,
            }
        }
        pub fn align(&mut self, n: usize) {
            while self.buf.len() % n != 0 {
                self.buf.push(0);
            }
        }
        pub fn u8(&mut self, v: u8) {
            self.buf.push(v);
        }
        pub fn u16(&mut self, v: u16) {
            self.align(2);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        pub fn u32(&mut self, v: u32) {
            self.align(4);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        pub fn filetime(&mut self, v: u64) {
            self.u32(v as u32);
            self.u32((v >> 32) as u32);
        }
        pub fn ptr(&mut self, present: bool) {
            if present {
                let r = self.next_ref;
                self.next_ref += 4;
                self.u32(r);
            } else {
                self.u32(0);
            }
        }
    }

    /// An `RPC_UNICODE_STRING` and its deferred buffer, with knobs.
    #[derive(Clone, Debug)]
    pub struct UStr {
        pub units: Vec<u16>,
        pub null: bool,
        pub length: Option<u16>,
        pub maximum_length: Option<u16>,
        pub max_count: Option<u32>,
        pub offset: u32,
        pub actual_count: Option<u32>,
    }

    impl UStr {
        pub fn new(s: &str) -> Self {
            UStr {
                units: s.encode_utf16().collect(),
                null: false,
                length: None,
                maximum_length: None,
                max_count: None,
                offset: 0,
                actual_count: None,
            }
        }
        pub fn null() -> Self {
            UStr {
                null: true,
                ..UStr::new("")
            }
        }
        pub fn max(mut self, maximum_length: u16) -> Self {
            self.maximum_length = Some(maximum_length);
            self
        }
        fn length(&self) -> u16 {
            self.length.unwrap_or((self.units.len() * 2) as u16)
        }
        fn maximum_length(&self) -> u16 {
            self.maximum_length.unwrap_or(self.length())
        }
        pub fn head(&self, w: &mut Ndr) {
            w.u16(self.length());
            w.u16(self.maximum_length());
            w.ptr(!self.null);
        }
        pub fn body(&self, w: &mut Ndr) {
            if self.null {
                return;
            }
            w.u32(
                self.max_count
                    .unwrap_or(u32::from(self.maximum_length() / 2)),
            );
            w.u32(self.offset);
            w.u32(self.actual_count.unwrap_or(self.units.len() as u32));
            for u in &self.units {
                w.buf.extend_from_slice(&u.to_le_bytes());
            }
        }
    }

    /// An NDR `RPC_SID`, with knobs.
    #[derive(Clone, Debug)]
    pub struct SidW {
        pub revision: u8,
        pub authority: [u8; 6],
        pub subs: Vec<u32>,
        pub conformance: Option<u32>,
    }

    impl SidW {
        pub fn of(sid: &Sid) -> Self {
            SidW {
                revision: sid.revision(),
                authority: sid.identifier_authority(),
                subs: sid.sub_authorities().to_vec(),
                conformance: None,
            }
        }
        pub fn parse(s: &str) -> Self {
            Self::of(&s.parse().unwrap())
        }
        pub fn write(&self, w: &mut Ndr) {
            w.u32(self.conformance.unwrap_or(self.subs.len() as u32));
            w.u8(self.revision);
            w.u8(self.subs.len() as u8);
            w.buf.extend_from_slice(&self.authority);
            for s in &self.subs {
                w.u32(*s);
            }
        }
    }

    /// A `GROUP_MEMBERSHIP` array with its count and pointer, with knobs.
    #[derive(Clone, Debug, Default)]
    pub struct Groups {
        pub entries: Vec<(u32, u32)>,
        pub count: Option<u32>,
        pub null: bool,
        pub conformance: Option<u32>,
    }

    impl Groups {
        pub fn of(entries: Vec<(u32, u32)>) -> Self {
            Groups {
                entries,
                ..Groups::default()
            }
        }
        fn count(&self) -> u32 {
            self.count.unwrap_or(self.entries.len() as u32)
        }
        pub fn head(&self, w: &mut Ndr) {
            w.u32(self.count());
            w.ptr(!self.null);
        }
        pub fn body(&self, w: &mut Ndr) {
            if self.null {
                return;
            }
            w.u32(self.conformance.unwrap_or(self.count()));
            for (rid, attr) in &self.entries {
                w.u32(*rid);
                w.u32(*attr);
            }
        }
    }

    /// `ExtraSids` with its count and pointer, with knobs.
    #[derive(Clone, Debug, Default)]
    pub struct Extra {
        pub entries: Vec<(Option<SidW>, u32)>,
        pub count: Option<u32>,
        pub null: bool,
        pub conformance: Option<u32>,
    }

    impl Extra {
        fn count(&self) -> u32 {
            self.count.unwrap_or(self.entries.len() as u32)
        }
        pub fn body(&self, w: &mut Ndr) {
            if self.null {
                return;
            }
            w.u32(self.conformance.unwrap_or(self.count()));
            for (sid, attr) in &self.entries {
                w.ptr(sid.is_some());
                w.u32(*attr);
            }
            for sid in self.entries.iter().filter_map(|(s, _)| s.as_ref()) {
                sid.write(w);
            }
        }
    }

    /// A `KERB_VALIDATION_INFO`, field by field.
    #[derive(Clone, Debug)]
    pub struct Kvi {
        pub null_top: bool,
        pub times: [u64; 6],
        /// EffectiveName, FullName, LogonScript, ProfilePath, HomeDirectory,
        /// HomeDirectoryDrive.
        pub strings: [UStr; 6],
        pub logon_count: u16,
        pub bad_password_count: u16,
        pub user_id: u32,
        pub primary_group_id: u32,
        pub groups: Groups,
        pub user_flags: u32,
        pub session_key: [u8; 16],
        pub logon_server: UStr,
        pub logon_domain_name: UStr,
        pub logon_domain_id: Option<SidW>,
        pub user_account_control: u32,
        pub sub_auth_status: u32,
        pub last_successful: u64,
        pub last_failed: u64,
        pub failed_count: u32,
        pub extra: Extra,
        pub resource_domain: Option<SidW>,
        pub resource_groups: Groups,
    }

    impl Kvi {
        pub fn simple() -> Kvi {
            Kvi {
                null_top: false,
                times: [1, 2, 3, 4, 5, 6],
                strings: [
                    UStr::new("alice"),
                    UStr::new("Alice Example"),
                    UStr::new(""),
                    UStr::null(),
                    UStr::null(),
                    UStr::null(),
                ],
                logon_count: 7,
                bad_password_count: 0,
                user_id: 1104,
                primary_group_id: 513,
                groups: Groups::of(vec![(513, 7), (1105, 7)]),
                user_flags: 0x20,
                session_key: [0; 16],
                logon_server: UStr::new("DC1"),
                logon_domain_name: UStr::new("EXAMPLE"),
                logon_domain_id: Some(SidW::parse("S-1-5-21-1-2-3")),
                user_account_control: 0x10,
                sub_auth_status: 0,
                last_successful: 0,
                last_failed: 0,
                failed_count: 0,
                extra: Extra {
                    entries: vec![(Some(SidW::parse("S-1-18-1")), 7)],
                    ..Extra::default()
                },
                resource_domain: None,
                resource_groups: Groups::default(),
            }
        }

        /// The NDR stream (no type serialization header).
        pub fn ndr(&self) -> Vec<u8> {
            let w = &mut Ndr::new();
            w.ptr(!self.null_top);
            for t in self.times {
                w.filetime(t);
            }
            for s in &self.strings {
                s.head(w);
            }
            w.u16(self.logon_count);
            w.u16(self.bad_password_count);
            w.u32(self.user_id);
            w.u32(self.primary_group_id);
            self.groups.head(w);
            w.u32(self.user_flags);
            w.buf.extend_from_slice(&self.session_key);
            self.logon_server.head(w);
            self.logon_domain_name.head(w);
            w.ptr(self.logon_domain_id.is_some());
            w.u32(0);
            w.u32(0);
            w.u32(self.user_account_control);
            w.u32(self.sub_auth_status);
            w.filetime(self.last_successful);
            w.filetime(self.last_failed);
            w.u32(self.failed_count);
            w.u32(0);
            w.u32(self.extra.count());
            w.ptr(!self.extra.null);
            w.ptr(self.resource_domain.is_some());
            self.resource_groups.head(w);
            // deferred
            for s in &self.strings {
                s.body(w);
            }
            self.groups.body(w);
            self.logon_server.body(w);
            self.logon_domain_name.body(w);
            if let Some(sid) = &self.logon_domain_id {
                sid.write(w);
            }
            self.extra.body(w);
            if let Some(sid) = &self.resource_domain {
                sid.write(w);
            }
            self.resource_groups.body(w);
            std::mem::take(&mut w.buf)
        }

        /// The PAC buffer: type serialization header + NDR.
        pub fn buffer(&self) -> Vec<u8> {
            serialize(self.ndr())
        }
    }

    /// Wraps an NDR stream in the type serialization version 1 headers,
    /// padding the object buffer to a multiple of 8.
    pub fn serialize(mut body: Vec<u8>) -> Vec<u8> {
        while body.len() % 8 != 0 {
            body.push(0);
        }
        let mut out = vec![1, 0x10, 8, 0, 0xcc, 0xcc, 0xcc, 0xcc];
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&body);
        out
    }

    fn align8(n: usize) -> usize {
        n.div_ceil(8) * 8
    }

    /// A PAC of the given buffers, each at the next 8-byte boundary.
    pub fn pac(buffers: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let header_len = 8 + 16 * buffers.len();
        let mut out = Vec::new();
        out.extend_from_slice(&(buffers.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut offset = align8(header_len);
        for (ty, data) in buffers {
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = align8(offset + data.len());
        }
        for (_, data) in buffers {
            out.resize(align8(out.len()), 0);
            out.extend_from_slice(data);
        }
        out.resize(align8(out.len()), 0);
        out
    }

    pub fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    pub fn client_info(client_id: u64, name: &str) -> Vec<u8> {
        let name = utf16(name);
        let mut out = client_id.to_le_bytes().to_vec();
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&name);
        out
    }

    pub fn signature(ty: u32, sig: &[u8]) -> Vec<u8> {
        let mut out = ty.to_le_bytes().to_vec();
        out.extend_from_slice(sig);
        out
    }

    /// `UPN_DNS_INFO`; with `sam_sid` the extended form (flag S).
    pub fn upn_dns(upn: &str, dns: &str, flags: u32, sam_sid: Option<(&str, &Sid)>) -> Vec<u8> {
        let header_len = if sam_sid.is_some() { 20 } else { 12 };
        let mut fields: Vec<Vec<u8>> = vec![utf16(upn), utf16(dns)];
        if let Some((sam, sid)) = sam_sid {
            fields.push(utf16(sam));
            fields.push(sid.to_bytes());
        }
        let mut body = Vec::new();
        let mut refs = Vec::new();
        for f in &fields {
            while (header_len + body.len()) % 8 != 0 {
                body.push(0);
            }
            refs.push((f.len() as u16, (header_len + body.len()) as u16));
            body.extend_from_slice(f);
        }
        let mut out = Vec::new();
        for (i, (len, off)) in refs.iter().enumerate() {
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
            if i == 1 {
                out.extend_from_slice(
                    &(flags | if sam_sid.is_some() { 2 } else { 0 }).to_le_bytes(),
                );
            }
        }
        out.extend_from_slice(&body);
        out
    }
}

use enc::{Extra, Groups, Kvi, SidW, UStr};

// ----- the [MS-PAC] section 3 example --------------------------------------

const SPEC_DOMAIN: &str = "S-1-5-21-397955417-626881126-188441444";

const SPEC_GROUP_RIDS: [u32; 26] = [
    0x0033_c461,
    0x002d_c309,
    0x0032_b45e,
    0x0000_0201,
    0x002c_b997,
    0x0032_f12b,
    0x0033_30ce,
    0x002e_2ea7,
    0x0032_f12a,
    0x002c_b998,
    0x0033_c462,
    0x0033_0194,
    0x0033_c476,
    0x002d_feae,
    0x002c_d232,
    0x0032_0816,
    0x002e_5b42,
    0x0032_b45f,
    0x0035_9cca,
    0x002d_4485,
    0x0032_f0c2,
    0x0031_eae9,
    0x002e_8eed,
    0x0031_ebb6,
    0x002e_2eab,
    0x002e_0e72,
];

const SPEC_EXTRA_RIDS: [u32; 12] = [
    0x002f_5474,
    0x0032_38e8,
    0x0032_38cd,
    0x0032_b45d,
    0x0035_1641,
    0x0031_eae8,
    0x0032_19c1,
    0x0032_f129,
    0x002e_5f0f,
    0x002e_5b2f,
    0x0031_8fef,
    0x002e_5f07,
];

/// The example's `KERB_VALIDATION_INFO`, written out from the annotated
/// dump in [MS-PAC] section 3.
fn spec_kvi() -> Kvi {
    let domain: Sid = SPEC_DOMAIN.parse().unwrap();
    let mut extra = vec![(
        Some(SidW::parse("S-1-5-21-773533881-1816936887-355810188-513")),
        7,
    )];
    for rid in SPEC_EXTRA_RIDS {
        extra.push((Some(SidW::of(&domain.with_rid(rid).unwrap())), 0x2000_0007));
    }
    Kvi {
        null_top: false,
        times: [
            0x01c6_6a65_0f66_86d1,
            0x7fff_ffff_ffff_ffff,
            0x7fff_ffff_ffff_ffff,
            0x01c6_4a78_fe39_d417,
            0x01c6_4b42_28a3_9417,
            0x01c6_817a_9724_5417,
        ],
        strings: [
            UStr::new("lzhu"),
            UStr::new("Liqiang(Larry) Zhu"),
            UStr::new("ntds2.bat"),
            UStr::new(""),
            UStr::new(""),
            UStr::new(""),
        ],
        logon_count: 0x1054,
        bad_password_count: 0,
        user_id: 0x002c_7997,
        primary_group_id: 0x201,
        groups: Groups::of(SPEC_GROUP_RIDS.iter().map(|r| (*r, 7)).collect()),
        user_flags: 0x20,
        session_key: [0; 16],
        logon_server: UStr::new("NTDEV-DC-05").max(0x18),
        logon_domain_name: UStr::new("NTDEV").max(0x0c),
        logon_domain_id: Some(SidW::of(&domain)),
        user_account_control: 0x10,
        sub_auth_status: 0,
        last_successful: 0,
        last_failed: 0,
        failed_count: 0,
        extra: Extra {
            entries: extra,
            ..Extra::default()
        },
        resource_domain: None,
        // Windows writes a null pointer for an empty ResourceGroupIds.
        resource_groups: Groups {
            null: true,
            ..Groups::default()
        },
    }
}

/// Asserts that `info` says what the model `m` encodes (for valid models).
fn assert_matches(info: &LogonInfo, m: &Kvi) {
    let s = |u: &UStr| String::from_utf16(&u.units).unwrap();
    let sid = |w: &SidW| {
        let mut b = vec![w.revision, w.subs.len() as u8];
        b.extend_from_slice(&w.authority);
        for x in &w.subs {
            b.extend_from_slice(&x.to_le_bytes());
        }
        Sid::from_bytes(&b).unwrap()
    };
    let times = [
        info.logon_time,
        info.logoff_time,
        info.kick_off_time,
        info.password_last_set,
        info.password_can_change,
        info.password_must_change,
    ];
    assert_eq!(times, m.times.map(FileTime));
    let strings = [
        &info.effective_name,
        &info.full_name,
        &info.logon_script,
        &info.profile_path,
        &info.home_directory,
        &info.home_directory_drive,
    ];
    for (got, want) in strings.iter().zip(&m.strings) {
        assert_eq!(**got, s(want));
    }
    assert_eq!(info.logon_count, m.logon_count);
    assert_eq!(info.bad_password_count, m.bad_password_count);
    assert_eq!(info.user_id, m.user_id);
    assert_eq!(info.primary_group_id, m.primary_group_id);
    let groups: Vec<(u32, u32)> = info
        .group_ids
        .iter()
        .map(|g| (g.rid, g.attributes))
        .collect();
    assert_eq!(groups, m.groups.entries);
    assert_eq!(info.user_flags, UserFlags(m.user_flags));
    assert_eq!(info.user_session_key, m.session_key);
    assert_eq!(info.logon_server, s(&m.logon_server));
    assert_eq!(info.logon_domain_name, s(&m.logon_domain_name));
    assert_eq!(
        info.logon_domain_id,
        sid(m.logon_domain_id.as_ref().unwrap())
    );
    assert_eq!(info.user_account_control, m.user_account_control);
    assert_eq!(info.sub_auth_status, m.sub_auth_status);
    assert_eq!(info.last_successful_i_logon, FileTime(m.last_successful));
    assert_eq!(info.last_failed_i_logon, FileTime(m.last_failed));
    assert_eq!(info.failed_i_logon_count, m.failed_count);
    let extra: Vec<(Sid, u32)> = info
        .extra_sids
        .iter()
        .map(|e| (e.sid, e.attributes))
        .collect();
    let want: Vec<(Sid, u32)> = m
        .extra
        .entries
        .iter()
        .map(|(w, a)| (sid(w.as_ref().unwrap()), *a))
        .collect();
    assert_eq!(extra, want);
    assert_eq!(
        info.resource_group_domain_sid,
        m.resource_domain.as_ref().map(sid)
    );
    let rg: Vec<(u32, u32)> = info
        .resource_group_ids
        .iter()
        .map(|g| (g.rid, g.attributes))
        .collect();
    assert_eq!(rg, m.resource_groups.entries);
}

#[test]
fn spec_example_buffer_table() {
    let table = info_buffers(SPEC_PAC).unwrap();
    let summary: Vec<(u32, u64, usize)> = table
        .iter()
        .map(|b| (b.buffer_type, b.offset, b.data.len()))
        .collect();
    // "cbBufferSize ... 0x000004B0", "offset value here is 0x00000000'00000048",
    // then types 0x0A, 0x06, 0x07 at 0x4F8, 0x510, 0x528.
    assert_eq!(
        summary,
        vec![
            (1, 0x48, 0x4b0),
            (10, 0x4f8, 0x12),
            (6, 0x510, 0x14),
            (7, 0x528, 0x14)
        ]
    );
}

#[test]
fn spec_example_every_field() {
    let pac = PacData::decode(SPEC_PAC).unwrap();
    assert_eq!(pac.buffers.len(), 4);
    let info = pac.logon_info().unwrap();

    // What the spec's prose states explicitly.
    assert_eq!(info.logon_time, FileTime(0x01c6_6a65_0f66_86d1));
    assert_eq!(info.effective_name, "lzhu");
    assert_eq!(info.full_name, "Liqiang(Larry) Zhu");
    assert_eq!(info.logon_script, "ntds2.bat");
    assert_eq!(info.profile_path, "");
    assert_eq!(info.home_directory, "");
    assert_eq!(info.home_directory_drive, "");
    assert_eq!(info.group_ids.len(), 26);
    assert_eq!(info.group_ids[0].rid, 0x0033_c461);
    assert_eq!(info.group_ids[0].attributes, 7);
    assert_eq!(info.logon_domain_id.to_string(), SPEC_DOMAIN);
    assert_eq!(
        info.logon_domain_id
            .with_rid(info.group_ids[0].rid)
            .unwrap()
            .to_string(),
        "S-1-5-21-397955417-626881126-188441444-3392609"
    );

    // Everything else, from the dump.
    assert_matches(info, &spec_kvi());
    assert_eq!(info.logoff_time, FileTime(0x7fff_ffff_ffff_ffff));
    assert_eq!(info.user_id, 2_914_711);
    assert_eq!(info.primary_group_id, 513);
    assert!(info.user_flags.contains(UserFlags::EXTRA_SIDS));
    assert!(!info.user_flags.contains(UserFlags::RESOURCE_GROUPS));
    assert_eq!(info.logon_server, "NTDEV-DC-05");
    assert_eq!(info.logon_domain_name, "NTDEV");
    assert_eq!(info.user_account_control, 0x10);
    assert_eq!(info.extra_sids.len(), 13);
    assert_eq!(
        info.extra_sids[0].sid.to_string(),
        "S-1-5-21-773533881-1816936887-355810188-513"
    );
    assert_eq!(info.extra_sids[1].attributes, 0x2000_0007);
    assert!(info.resource_group_domain_sid.is_none());
    assert!(info.resource_group_ids.is_empty());
    assert_eq!(
        info.user_sid().unwrap().to_string(),
        "S-1-5-21-397955417-626881126-188441444-2914711"
    );
    assert_eq!(info.down_level_logon_name(), "NTDEV\\lzhu");

    // Groups: primary (513, also listed in GroupIds) first, 26 domain groups
    // with 513 once, 13 extra SIDs.
    let sids = info.group_sids();
    assert_eq!(sids.len(), 26 + 13);
    assert_eq!(sids[0].to_string(), format!("{SPEC_DOMAIN}-513"));
    assert_eq!(sids[1].to_string(), format!("{SPEC_DOMAIN}-3392609"));
    assert_eq!(
        sids[26].to_string(),
        "S-1-5-21-773533881-1816936887-355810188-513"
    );
    assert_eq!(
        sids[38].to_string(),
        format!("{SPEC_DOMAIN}-{}", 0x002e_5f07)
    );

    // §3.2: "ClientId field that contains 0x01C66A65'0ED94900" and "lzhu".
    let client = pac.client_info().unwrap();
    assert_eq!(client.client_id, FileTime(0x01c6_6a65_0ed9_4900));
    assert_eq!(client.name, "lzhu");

    // §3.3: "SignatureType field is 0xFFFFFF76, or -138", 16-byte hash.
    let server = pac.server_checksum().unwrap();
    assert_eq!(server.signature_type, PacSignature::HMAC_MD5);
    assert_eq!(
        server.signature,
        [
            0x41, 0xed, 0xce, 0x9a, 0x34, 0x81, 0x5d, 0x3a, 0xef, 0x7b, 0xc9, 0x88, 0x74, 0x80,
            0x5d, 0x25
        ]
    );
    assert_eq!(server.rodc_identifier, None);
    let kdc = pac.kdc_checksum().unwrap();
    assert_eq!(kdc.signature_type, PacSignature::HMAC_MD5);
    assert_eq!(
        kdc.signature,
        [
            0xf7, 0xa5, 0x34, 0xda, 0xb2, 0xc0, 0x29, 0x86, 0xef, 0xe0, 0xfb, 0xe5, 0x11, 0x0a,
            0x4f, 0x32
        ]
    );
    assert!(pac.upn_dns_info().is_none());
}

#[test]
fn test_encoder_reproduces_the_spec_example_byte_for_byte() {
    let table = info_buffers(SPEC_PAC).unwrap();
    assert_eq!(spec_kvi().buffer(), table[0].data);
    let rebuilt = enc::pac(&[
        (1, spec_kvi().buffer()),
        (10, enc::client_info(0x01c6_6a65_0ed9_4900, "lzhu")),
        (6, table[2].data.to_vec()),
        (7, table[3].data.to_vec()),
    ]);
    assert_eq!(rebuilt, SPEC_PAC);
}

#[test]
fn spec_logon_info_alone_is_the_mit_attribute_value() {
    let table = info_buffers(SPEC_PAC).unwrap();
    let info = LogonInfo::decode(table[0].data).unwrap();
    assert_matches(&info, &spec_kvi());
}

// ----- truncation ------------------------------------------------------------

#[test]
fn every_truncation_of_the_spec_logon_info_fails() {
    let buffer = info_buffers(SPEC_PAC).unwrap()[0].data;
    for n in 0..buffer.len() {
        assert!(
            LogonInfo::decode(&buffer[..n]).is_err(),
            "prefix of {n} bytes"
        );
    }
}

#[test]
fn every_truncation_of_the_spec_pac_fails_until_the_padding() {
    // The last buffer ends at 0x53c; the 4 bytes after it are padding.
    for n in 0..SPEC_PAC.len() {
        let r = PacData::decode(&SPEC_PAC[..n]);
        if n < 0x53c {
            assert!(r.is_err(), "prefix of {n} bytes decoded");
        } else {
            assert!(r.is_ok(), "prefix of {n} bytes: {r:?}");
        }
    }
}

#[test]
fn truncating_the_ndr_object_buffer_is_caught_inside_it() {
    // Claim a shorter object buffer: the decoder must stop at its bound
    // even though the real bytes follow.
    let mut b = spec_kvi().buffer();
    b[8..12].copy_from_slice(&0x100u32.to_le_bytes());
    assert!(matches!(
        LogonInfo::decode(&b),
        Err(PacError::Truncated { .. })
    ));
    b[8..12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    assert!(matches!(
        LogonInfo::decode(&b),
        Err(PacError::Truncated {
            what: "NDR object buffer",
            ..
        })
    ));
}

// ----- type serialization header ----------------------------------------------

#[test]
fn serialization_header_checks() {
    let good = Kvi::simple().buffer();
    assert!(LogonInfo::decode(&good).is_ok());
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(
        LogonInfo::decode(&b),
        Err(PacError::SerializationVersion { found: 2 })
    );
    let mut b = good.clone();
    b[1] = 0x00;
    assert_eq!(
        LogonInfo::decode(&b),
        Err(PacError::UnsupportedEndianness { found: 0 })
    );
    let mut b = good.clone();
    b[2] = 16;
    assert_eq!(
        LogonInfo::decode(&b),
        Err(PacError::CommonHeaderLength { found: 16 })
    );
    // Fillers are ignored.
    let mut b = good.clone();
    b[4..8].copy_from_slice(&[1, 2, 3, 4]);
    b[12..16].copy_from_slice(&[5, 6, 7, 8]);
    assert!(LogonInfo::decode(&b).is_ok());
    // Eight unexplained bytes inside the object buffer.
    let mut body = Kvi::simple().ndr();
    while body.len() % 8 != 0 {
        body.push(0);
    }
    body.extend_from_slice(&[0; 8]);
    assert_eq!(
        LogonInfo::decode(&enc::serialize(body)),
        Err(PacError::TrailingData {
            what: "KERB_VALIDATION_INFO",
            len: 8
        })
    );
    // ... or after it.
    let mut b = good;
    b.extend_from_slice(&[0; 8]);
    assert_eq!(
        LogonInfo::decode(&b),
        Err(PacError::TrailingData {
            what: "NDR object buffer",
            len: 8
        })
    );
}

// ----- pointers ----------------------------------------------------------------

#[test]
fn null_pointers_where_optional_decode() {
    let mut m = Kvi::simple();
    m.strings = [
        UStr::new("alice"),
        UStr::null(),
        UStr::null(),
        UStr::null(),
        UStr::null(),
        UStr::null(),
    ];
    m.logon_server = UStr::null();
    m.groups = Groups {
        null: true,
        ..Groups::default()
    };
    m.extra = Extra {
        null: true,
        ..Extra::default()
    };
    m.user_flags = 0;
    m.resource_domain = None;
    m.resource_groups = Groups {
        null: true,
        ..Groups::default()
    };
    let info = LogonInfo::decode(&m.buffer()).unwrap();
    assert_matches(&info, &m);
    assert_eq!(info.full_name, "");
    assert!(info.group_ids.is_empty());
    // Primary group only.
    assert_eq!(
        info.group_sids(),
        vec!["S-1-5-21-1-2-3-513".parse::<Sid>().unwrap()]
    );
}

#[test]
fn null_pointers_where_required_fail() {
    let mut m = Kvi::simple();
    m.null_top = true;
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::NullPointer {
            field: "KERB_VALIDATION_INFO"
        })
    );

    let mut m = Kvi::simple();
    m.logon_domain_id = None;
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::NullPointer {
            field: "LogonDomainId"
        })
    );

    let mut m = Kvi::simple();
    m.extra.entries.push((None, 7));
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::NullPointer {
            field: "ExtraSids[].Sid"
        })
    );

    let mut m = Kvi::simple();
    m.groups.null = true;
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::NullArrayWithCount {
            field: "GroupIds",
            count: 2
        })
    );

    let mut m = Kvi::simple();
    m.extra.null = true;
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::NullArrayWithCount {
            field: "ExtraSids",
            count: 1
        })
    );

    let mut m = Kvi::simple();
    m.strings[0].null = true;
    m.strings[0].length = Some(10);
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::NullPointerWithLength {
            field: "EffectiveName",
            length: 10
        })
    );
}

// ----- strings -------------------------------------------------------------------

#[test]
fn string_conformance_and_variance_are_checked() {
    type Case = (fn(&mut UStr), PacError);
    let cases: Vec<Case> = vec![
        (
            |s| s.offset = 1,
            PacError::NonZeroVarianceOffset {
                field: "EffectiveName",
                offset: 1,
            },
        ),
        (
            |s| s.actual_count = Some(4),
            PacError::VarianceMismatch {
                field: "EffectiveName",
                expected: 5,
                found: 4,
            },
        ),
        (
            |s| s.actual_count = Some(6),
            PacError::VarianceMismatch {
                field: "EffectiveName",
                expected: 5,
                found: 6,
            },
        ),
        (
            |s| s.max_count = Some(4),
            PacError::ConformanceMismatch {
                field: "EffectiveName",
                expected: 5,
                found: 4,
            },
        ),
        (
            |s| s.length = Some(9),
            PacError::OddStringLength {
                field: "EffectiveName",
                len: 9,
            },
        ),
        (
            |s| s.maximum_length = Some(8),
            PacError::StringLengthExceedsMaximum {
                field: "EffectiveName",
                length: 10,
                maximum_length: 8,
            },
        ),
        (
            |s| s.length = Some(8),
            // Length says 4 units, but the header claims the default max 4 and
            // the body carries 5 actual units.
            PacError::VarianceMismatch {
                field: "EffectiveName",
                expected: 4,
                found: 5,
            },
        ),
    ];
    for (mutate, want) in cases {
        let mut m = Kvi::simple();
        mutate(&mut m.strings[0]);
        assert_eq!(LogonInfo::decode(&m.buffer()), Err(want.clone()), "{want}");
    }
    // A larger MaximumLength is fine (the spec example's LogonServer).
    let mut m = Kvi::simple();
    m.strings[0] = UStr::new("alice").max(64);
    assert_eq!(
        LogonInfo::decode(&m.buffer()).unwrap().effective_name,
        "alice"
    );
}

#[test]
fn strings_are_bounded_and_strict_utf16() {
    let mut m = Kvi::simple();
    m.strings[1] = UStr::new(&"x".repeat(MAX_STRING_UNITS));
    assert_eq!(
        LogonInfo::decode(&m.buffer()).unwrap().full_name.len(),
        MAX_STRING_UNITS
    );
    m.strings[1] = UStr::new(&"x".repeat(MAX_STRING_UNITS + 1));
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::StringTooLong {
            field: "FullName",
            units: MAX_STRING_UNITS + 1,
            max: MAX_STRING_UNITS
        })
    );
    let mut m = Kvi::simple();
    m.strings[0].units = vec![0x61, 0xd800, 0x62];
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::InvalidUtf16 {
            field: "EffectiveName"
        })
    );
    let mut m = Kvi::simple();
    m.strings[0] = UStr::new("Jürgen 山田 🙂");
    assert_eq!(
        LogonInfo::decode(&m.buffer()).unwrap().effective_name,
        "Jürgen 山田 🙂"
    );
}

// ----- arrays and counts --------------------------------------------------------

#[test]
fn counts_are_bounded_before_anything_is_read() {
    for (mutate, field) in [
        (
            (|m: &mut Kvi| m.groups.count = Some(MAX_GROUPS as u32 + 1)) as fn(&mut Kvi),
            "GroupCount",
        ),
        (|m| m.extra.count = Some(u32::MAX), "SidCount"),
        (
            |m| m.resource_groups.count = Some(0x4000_0000),
            "ResourceGroupCount",
        ),
    ] {
        let mut m = Kvi::simple();
        mutate(&mut m);
        assert!(
            matches!(
                LogonInfo::decode(&m.buffer()),
                Err(PacError::CountTooLarge { field: f, max: MAX_GROUPS, .. }) if f == field
            ),
            "{field}"
        );
    }
    // Exactly the limit decodes.
    let mut m = Kvi::simple();
    m.groups = Groups::of((0..MAX_GROUPS as u32).map(|i| (1000 + i, 7)).collect());
    assert_eq!(
        LogonInfo::decode(&m.buffer()).unwrap().group_ids.len(),
        MAX_GROUPS
    );
}

#[test]
fn array_conformance_must_match_the_count() {
    let mut m = Kvi::simple();
    m.groups.conformance = Some(3);
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::ConformanceMismatch {
            field: "GroupIds",
            expected: 2,
            found: 3
        })
    );
    // A count larger than the entries present: the reads run out.
    let mut m = Kvi::simple();
    m.groups.count = Some(40);
    assert!(LogonInfo::decode(&m.buffer()).is_err());

    let mut m = Kvi::simple();
    m.extra.conformance = Some(0);
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::ConformanceMismatch {
            field: "ExtraSids",
            expected: 1,
            found: 0
        })
    );

    let mut m = Kvi::simple();
    m.resource_domain = Some(SidW::parse("S-1-5-21-9-9-9"));
    m.resource_groups = Groups {
        entries: vec![(600, 0x2000_0007)],
        conformance: Some(2),
        ..Groups::default()
    };
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::ConformanceMismatch {
            field: "ResourceGroupIds",
            expected: 1,
            found: 2
        })
    );
}

// ----- SIDs -----------------------------------------------------------------------

#[test]
fn rpc_sid_checks() {
    let mut m = Kvi::simple();
    let mut sid = SidW::parse("S-1-5-21-1-2-3");
    sid.conformance = Some(5);
    m.logon_domain_id = Some(sid);
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::ConformanceMismatch {
            field: "LogonDomainId",
            expected: 4,
            found: 5
        })
    );

    let mut m = Kvi::simple();
    let mut sid = SidW::parse("S-1-5-21-1-2-3");
    sid.subs = (0..16).collect();
    m.logon_domain_id = Some(sid);
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::InvalidSid {
            field: "LogonDomainId",
            source: SidError::TooManySubAuthorities { count: 16 }
        })
    );

    let mut m = Kvi::simple();
    let mut sid = SidW::parse("S-1-5-21-1-2-3");
    sid.revision = 2;
    m.extra.entries = vec![(Some(sid), 7)];
    assert_eq!(
        LogonInfo::decode(&m.buffer()),
        Err(PacError::InvalidSid {
            field: "ExtraSids[].Sid",
            source: SidError::UnsupportedRevision { found: 2 }
        })
    );

    // 15 sub-authorities is the maximum and decodes; no RID can be appended.
    let mut m = Kvi::simple();
    let fifteen = Sid::new(5, &(1..=15).collect::<Vec<_>>()).unwrap();
    m.logon_domain_id = Some(SidW::of(&fifteen));
    let info = LogonInfo::decode(&m.buffer()).unwrap();
    assert_eq!(info.logon_domain_id, fifteen);
    assert_eq!(info.user_sid(), None);
    assert_eq!(info.group_sids(), vec!["S-1-18-1".parse::<Sid>().unwrap()]);
}

// ----- group assembly ----------------------------------------------------------------

#[test]
fn group_sids_order_dedup_and_resource_groups() {
    let mut m = Kvi::simple();
    m.primary_group_id = 513;
    m.groups = Groups::of(vec![(1105, 7), (513, 0x0000_0007), (1105, 7), (1200, 3)]);
    m.extra = Extra {
        entries: vec![
            (Some(SidW::parse("S-1-5-21-9-9-9-1201")), 7),
            (Some(SidW::parse("S-1-5-21-1-2-3-1105")), 7), // duplicate of a domain group
            (Some(SidW::parse("S-1-18-1")), 7),
        ],
        ..Extra::default()
    };
    m.user_flags = UserFlags::EXTRA_SIDS | UserFlags::RESOURCE_GROUPS;
    m.resource_domain = Some(SidW::parse("S-1-5-21-7-7-7"));
    m.resource_groups = Groups::of(vec![(600, 0x2000_0007), (601, 0x2000_0007)]);
    let info = LogonInfo::decode(&m.buffer()).unwrap();
    assert_matches(&info, &m);
    let got: Vec<String> = info.group_sids().iter().map(Sid::to_string).collect();
    assert_eq!(
        got,
        [
            "S-1-5-21-1-2-3-513",
            "S-1-5-21-1-2-3-1105",
            "S-1-5-21-1-2-3-1200",
            "S-1-5-21-9-9-9-1201",
            "S-1-18-1",
            "S-1-5-21-7-7-7-600",
            "S-1-5-21-7-7-7-601",
        ]
    );
    let groups = info.groups();
    assert_eq!(groups[2].attributes, 3);
    assert_eq!(groups[5].attributes, 0x2000_0007);
    assert!(groups[5].attributes & group_attributes::RESOURCE != 0);
    assert_eq!(info.user_sid().unwrap().to_string(), "S-1-5-21-1-2-3-1104");
}

#[test]
fn primary_group_not_listed_gets_default_attributes() {
    let mut m = Kvi::simple();
    m.primary_group_id = 515;
    let info = LogonInfo::decode(&m.buffer()).unwrap();
    let groups = info.groups();
    assert_eq!(groups[0].sid.to_string(), "S-1-5-21-1-2-3-515");
    assert_eq!(groups[0].attributes, group_attributes::DEFAULT);
}

#[test]
fn user_id_zero_means_first_extra_sid_is_the_user() {
    let mut m = Kvi::simple();
    m.user_id = 0;
    m.extra.entries = vec![
        (Some(SidW::parse("S-1-5-21-5-5-5-2000")), 7),
        (Some(SidW::parse("S-1-5-21-5-5-5-2001")), 7),
    ];
    let info = LogonInfo::decode(&m.buffer()).unwrap();
    assert_eq!(info.user_sid().unwrap().to_string(), "S-1-5-21-5-5-5-2000");
    let sids: Vec<String> = info.group_sids().iter().map(Sid::to_string).collect();
    assert!(!sids.contains(&"S-1-5-21-5-5-5-2000".to_string()));
    assert!(sids.contains(&"S-1-5-21-5-5-5-2001".to_string()));
}

#[test]
fn resource_groups_without_domain_sid_are_skipped() {
    let mut m = Kvi::simple();
    m.resource_domain = None;
    m.resource_groups = Groups::of(vec![(600, 7)]);
    let info = LogonInfo::decode(&m.buffer()).unwrap();
    assert_eq!(info.resource_group_ids.len(), 1);
    assert!(!info.group_sids().iter().any(|s| s.rid() == Some(600)));
}

// ----- PACTYPE and the buffer table -----------------------------------------------

fn simple_pac() -> Vec<u8> {
    enc::pac(&[
        (1, Kvi::simple().buffer()),
        (10, enc::client_info(42, "alice")),
        (
            12,
            enc::upn_dns(
                "alice@example.com",
                "EXAMPLE.COM",
                0,
                Some(("alice", &"S-1-5-21-1-2-3-1104".parse().unwrap())),
            ),
        ),
        (6, enc::signature(16, &[0xaa; 12])),
        (7, enc::signature(16, &[0xbb; 12])),
    ])
}

#[test]
fn a_whole_hand_built_pac() {
    let pac = PacData::decode(&simple_pac()).unwrap();
    let types: Vec<u32> = pac.buffers.iter().map(PacBuffer::buffer_type).collect();
    assert_eq!(types, [1, 10, 12, 6, 7]);
    assert_eq!(pac.logon_info().unwrap().effective_name, "alice");
    assert_eq!(pac.client_info().unwrap().name, "alice");
    assert_eq!(pac.client_info().unwrap().client_id, FileTime(42));
    let upn = pac.upn_dns_info().unwrap();
    assert_eq!(upn.upn, "alice@example.com");
    assert_eq!(upn.dns_domain_name, "EXAMPLE.COM");
    assert_eq!(upn.flags, UpnDnsInfo::EXTENDED);
    assert_eq!(upn.sam_name.as_deref(), Some("alice"));
    assert_eq!(upn.sid.unwrap().to_string(), "S-1-5-21-1-2-3-1104");
    assert_eq!(pac.server_checksum().unwrap().signature, [0xaa; 12]);
    assert_eq!(pac.kdc_checksum().unwrap().signature, [0xbb; 12]);
}

fn set_entry(pac: &mut [u8], index: usize, ty: u32, size: u32, offset: u64) {
    let at = 8 + 16 * index;
    pac[at..at + 4].copy_from_slice(&ty.to_le_bytes());
    pac[at + 4..at + 8].copy_from_slice(&size.to_le_bytes());
    pac[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
}

#[test]
fn buffer_table_checks() {
    let good = simple_pac();
    let table = info_buffers(&good).unwrap();
    let (o1, o2) = (table[1].offset, table[2].offset);

    let mut b = good.clone();
    b[4] = 1;
    assert_eq!(
        PacData::decode(&b),
        Err(PacError::UnsupportedVersion { found: 1 })
    );

    let mut b = good.clone();
    b[0..4].copy_from_slice(&1025u32.to_le_bytes());
    assert_eq!(
        PacData::decode(&b),
        Err(PacError::TooManyBuffers {
            count: 1025,
            max: 1024
        })
    );

    let mut b = good.clone();
    b[0..4].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(
        PacData::decode(&b),
        Err(PacError::Truncated {
            what: "PAC_INFO_BUFFER array",
            ..
        })
    ));

    let mut b = good.clone();
    set_entry(&mut b, 1, 10, table[1].data.len() as u32, o1 + 4);
    assert_eq!(
        PacData::decode(&b),
        Err(PacError::BufferMisaligned {
            index: 1,
            buffer_type: 10,
            offset: o1 + 4
        })
    );

    let mut b = good.clone();
    set_entry(&mut b, 1, 10, 8, 0x48);
    assert_eq!(
        PacData::decode(&b),
        Err(PacError::BufferOverlapsHeader {
            index: 1,
            buffer_type: 10,
            offset: 0x48,
            header_len: 88
        })
    );

    let mut b = good.clone();
    set_entry(&mut b, 4, 7, 0x1000, table[4].offset);
    assert!(matches!(
        PacData::decode(&b),
        Err(PacError::BufferOutOfBounds { index: 4, .. })
    ));
    let mut b = good.clone();
    set_entry(&mut b, 4, 7, 16, u64::MAX - 7);
    assert!(matches!(
        PacData::decode(&b),
        Err(PacError::BufferOutOfBounds { index: 4, .. })
    ));

    // Client info grown into the UPN buffer.
    let mut b = good.clone();
    set_entry(&mut b, 1, 10, (o2 - o1 + 8) as u32, o1);
    assert_eq!(
        PacData::decode(&b),
        Err(PacError::BuffersOverlap {
            first: 1,
            second: 2
        })
    );
    // Two entries for the same bytes.
    let mut b = good.clone();
    set_entry(&mut b, 4, 7, table[3].data.len() as u32, table[3].offset);
    assert_eq!(
        PacData::decode(&b),
        Err(PacError::BuffersOverlap {
            first: 3,
            second: 4
        })
    );
    // Empty buffers overlap nothing.
    let mut b = good.clone();
    set_entry(&mut b, 4, 99, 0, table[3].offset);
    let pac = PacData::decode(&b).unwrap();
    assert_eq!(
        pac.buffers[4],
        PacBuffer::Other {
            buffer_type: 99,
            data: vec![]
        }
    );
}

#[test]
fn empty_pac_and_unknown_buffers() {
    let pac = PacData::decode(&[0; 8]).unwrap();
    assert!(pac.buffers.is_empty());
    assert!(pac.logon_info().is_none());
    assert!(matches!(
        PacData::decode(&[0; 7]),
        Err(PacError::Truncated { .. })
    ));
    let pac = PacData::decode(&enc::pac(&[
        (17, vec![2, 0, 0, 0, 1, 0, 0, 0]),
        (0x7777, vec![9]),
    ]))
    .unwrap();
    assert_eq!(
        pac.buffers,
        vec![
            PacBuffer::Other {
                buffer_type: buffer_type::ATTRIBUTES_INFO,
                data: vec![2, 0, 0, 0, 1, 0, 0, 0]
            },
            PacBuffer::Other {
                buffer_type: 0x7777,
                data: vec![9]
            }
        ]
    );
}

#[test]
fn a_bad_known_buffer_fails_the_pac_and_is_named() {
    let mut m = Kvi::simple();
    m.logon_domain_id = None;
    let b = enc::pac(&[(10, enc::client_info(1, "a")), (1, m.buffer())]);
    assert_eq!(
        PacData::decode(&b),
        Err(PacError::InBuffer {
            index: 1,
            buffer_type: 1,
            source: Box::new(PacError::NullPointer {
                field: "LogonDomainId"
            })
        })
    );
}

#[test]
fn second_buffers_of_a_type_are_ignored_raw() {
    let b = enc::pac(&[
        (1, Kvi::simple().buffer()),
        (1, vec![0xde, 0xad]),
        (10, enc::client_info(1, "alice")),
        (10, vec![1]),
    ]);
    let pac = PacData::decode(&b).unwrap();
    assert_eq!(pac.logon_info().unwrap().effective_name, "alice");
    assert_eq!(
        pac.buffers[1],
        PacBuffer::Other {
            buffer_type: 1,
            data: vec![0xde, 0xad]
        }
    );
    assert_eq!(pac.client_info().unwrap().name, "alice");
}

#[test]
fn requestor_sid_buffer() {
    let sid: Sid = "S-1-5-21-1-2-3-1104".parse().unwrap();
    let pac = PacData::decode(&enc::pac(&[(18, sid.to_bytes())])).unwrap();
    assert_eq!(pac.requestor_sid(), Some(&sid));
    let mut long = sid.to_bytes();
    long.extend_from_slice(&[0; 8]);
    assert!(matches!(
        PacData::decode(&enc::pac(&[(18, long)])),
        Err(PacError::InBuffer { .. })
    ));
}

// ----- the plain buffers -----------------------------------------------------------

#[test]
fn client_info_checks() {
    assert_eq!(
        ClientInfo::decode(&enc::client_info(7, "bob"))
            .unwrap()
            .name,
        "bob"
    );
    let mut odd = enc::client_info(7, "bob");
    odd[8] = 5;
    odd.truncate(15);
    assert_eq!(
        ClientInfo::decode(&odd),
        Err(PacError::OddStringLength {
            field: "PAC_CLIENT_INFO.Name",
            len: 5
        })
    );
    let mut long = enc::client_info(7, "bob");
    long[8] = 8;
    assert!(matches!(
        ClientInfo::decode(&long),
        Err(PacError::Truncated { .. })
    ));
    let mut trailing = enc::client_info(7, "bob");
    trailing.extend_from_slice(&[0; 8]);
    assert!(matches!(
        ClientInfo::decode(&trailing),
        Err(PacError::TrailingData { .. })
    ));
}

#[test]
fn signature_checks() {
    let s = PacSignature::decode(&enc::signature(15, &[1; 12])).unwrap();
    assert_eq!((s.signature.len(), s.rodc_identifier), (12, None));
    let s = PacSignature::decode(&enc::signature(16, &[1; 14])).unwrap();
    assert_eq!(s.rodc_identifier, Some(0x0101));
    assert_eq!(s.signature, [1; 12]);
    assert_eq!(
        PacSignature::decode(&enc::signature(PacSignature::HMAC_MD5, &[1; 12])),
        Err(PacError::SignatureLength {
            signature_type: PacSignature::HMAC_MD5,
            expected: 16,
            found: 12
        })
    );
    assert_eq!(
        PacSignature::decode(&enc::signature(16, &[1; 13])),
        Err(PacError::SignatureLength {
            signature_type: 16,
            expected: 12,
            found: 13
        })
    );
    // An unknown checksum type keeps every byte.
    let s = PacSignature::decode(&enc::signature(0x8003, &[3; 20])).unwrap();
    assert_eq!(s.signature, [3; 20]);
    assert!(PacSignature::decode(&[1, 2]).is_err());
}

#[test]
fn upn_dns_info_checks() {
    let plain = enc::upn_dns(
        "bob@example.com",
        "EXAMPLE.COM",
        UpnDnsInfo::UPN_CONSTRUCTED,
        None,
    );
    let u = UpnDnsInfo::decode(&plain).unwrap();
    assert_eq!(u.upn, "bob@example.com");
    assert_eq!(u.flags, UpnDnsInfo::UPN_CONSTRUCTED);
    assert_eq!((u.sam_name, u.sid), (None, None));

    // UPN length past the end.
    let mut b = plain.clone();
    b[0..2].copy_from_slice(&400u16.to_le_bytes());
    assert!(matches!(
        UpnDnsInfo::decode(&b),
        Err(PacError::FieldOutOfBounds {
            field: "UPN_DNS_INFO.Upn",
            len: 400,
            ..
        })
    ));
    // DNS name pointing into the header.
    let mut b = plain.clone();
    b[6..8].copy_from_slice(&4u16.to_le_bytes());
    assert_eq!(
        UpnDnsInfo::decode(&b),
        Err(PacError::FieldOverlapsHeader {
            field: "UPN_DNS_INFO.DnsDomainName",
            offset: 4,
            header_len: 12
        })
    );
    // Odd UPN length.
    let mut b = plain.clone();
    b[0..2].copy_from_slice(&3u16.to_le_bytes());
    assert!(matches!(
        UpnDnsInfo::decode(&b),
        Err(PacError::OddStringLength { .. })
    ));
    // Flag S set on a buffer without the extended fields: they would be the
    // UPN's bytes; decoding must fail or succeed without panicking, and here
    // the offsets land out of bounds.
    let mut b = plain;
    b[8] |= 2;
    assert!(UpnDnsInfo::decode(&b).is_err());

    // Extended with a bad SID.
    let sid: Sid = "S-1-5-21-1-2-3-1104".parse().unwrap();
    let mut ext = enc::upn_dns("bob@example.com", "EXAMPLE.COM", 0, Some(("bob", &sid)));
    let u = UpnDnsInfo::decode(&ext).unwrap();
    assert_eq!(u.sid, Some(sid));
    let sid_off = u16::from_le_bytes([ext[18], ext[19]]) as usize;
    ext[sid_off + 1] = 16;
    assert!(matches!(
        UpnDnsInfo::decode(&ext),
        Err(PacError::InvalidSid { .. })
    ));
}

// ----- property tests --------------------------------------------------------------

fn ustr() -> impl Strategy<Value = UStr> {
    prop_oneof![
        "[a-zA-Z0-9 ._-]{0,12}".prop_map(|s| UStr::new(&s)),
        "\\PC{0,6}".prop_map(|s| UStr::new(&s)),
        (0u16..40).prop_map(|extra| {
            let mut s = UStr::new("padded");
            s.maximum_length = Some(12 + 2 * extra);
            s
        }),
        Just(UStr::null()),
    ]
}

fn sid_w(max_subs: usize) -> impl Strategy<Value = SidW> {
    (
        0u64..(1 << 48),
        prop::collection::vec(any::<u32>(), 0..=max_subs),
    )
        .prop_map(|(auth, subs)| SidW::of(&Sid::new(auth, &subs).unwrap()))
}

fn groups() -> impl Strategy<Value = Groups> {
    prop::collection::vec((any::<u32>(), any::<u32>()), 0..12).prop_map(Groups::of)
}

prop_compose! {
    fn kvi()(
        times in any::<[u64; 6]>(),
        strings in [ustr(), ustr(), ustr(), ustr(), ustr(), ustr()],
        counts in any::<(u16, u16, u32, u32)>(),
        groups in groups(),
        session_key in any::<[u8; 16]>(),
        logon_server in ustr(),
        logon_domain_name in ustr(),
        domain in sid_w(15),
        misc in any::<(u32, u32, u64, u64, u32, u32)>(),
        extra in prop::collection::vec((sid_w(15), any::<u32>()), 0..6),
        resource_domain in prop::option::of(sid_w(15)),
        resource_groups in groups(),
    ) -> Kvi {
        Kvi {
            null_top: false,
            times,
            strings,
            logon_count: counts.0,
            bad_password_count: counts.1,
            user_id: counts.2,
            primary_group_id: counts.3,
            groups,
            user_flags: misc.5,
            session_key,
            logon_server,
            logon_domain_name,
            logon_domain_id: Some(domain),
            user_account_control: misc.0,
            sub_auth_status: misc.1,
            last_successful: misc.2,
            last_failed: misc.3,
            failed_count: misc.4,
            extra: Extra {
                entries: extra.into_iter().map(|(s, a)| (Some(s), a)).collect(),
                ..Extra::default()
            },
            resource_domain,
            resource_groups,
        }
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Valid inputs to mutate.
fn seeds() -> Vec<Vec<u8>> {
    named_seeds().into_iter().map(|(_, d)| d).collect()
}

fn named_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut m = Kvi::simple();
    m.user_flags |= UserFlags::RESOURCE_GROUPS;
    m.resource_domain = Some(SidW::parse("S-1-5-21-7-7-7"));
    m.resource_groups = Groups::of(vec![(600, 0x2000_0007)]);
    vec![
        ("ms_pac_section3", SPEC_PAC.to_vec()),
        ("hand_built_full", simple_pac()),
        ("resource_groups", enc::pac(&[(1, m.buffer())])),
    ]
}

proptest! {
    #![proptest_config(config(300))]

    /// What the encoder writes, the decoder reads back, and the group SIDs
    /// are unique.
    #[test]
    fn encode_decode_agree(m in kvi()) {
        let info = LogonInfo::decode(&m.buffer()).unwrap();
        assert_matches(&info, &m);
        let sids = info.group_sids();
        let unique: std::collections::HashSet<_> = sids.iter().collect();
        prop_assert_eq!(unique.len(), sids.len());
        // And inside a PAC.
        let pac = PacData::decode(&enc::pac(&[(1, m.buffer())])).unwrap();
        prop_assert_eq!(pac.logon_info(), Some(&info));
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = PacData::decode(&data);
        let _ = LogonInfo::decode(&data);
        let _ = UpnDnsInfo::decode(&data);
        let _ = ClientInfo::decode(&data);
        let _ = PacSignature::decode(&data);
        let _ = Sid::from_bytes(&data);
        if let Ok(s) = std::str::from_utf8(&data) {
            let _ = s.parse::<Sid>();
        }
    }

    #[test]
    fn random_logon_info_after_a_valid_header_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = LogonInfo::decode(&enc::serialize(body));
    }

    #[test]
    fn mutated_pacs_never_panic(
        seed in 0usize..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let mut data = seeds().swap_remove(seed);
        for (at, byte, kind) in edits {
            if data.is_empty() {
                break;
            }
            let i = at.index(data.len());
            match kind {
                0 => data[i] = byte,
                1 => data[i] ^= 1 << (byte % 8),
                2 => data.truncate(i),
                _ => data.insert(i, byte),
            }
        }
        if let Ok(pac) = PacData::decode(&data) {
            if let Some(info) = pac.logon_info() {
                let _ = info.group_sids();
                let _ = info.user_sid();
            }
        }
        if let Ok(table) = info_buffers(&data) {
            for b in table {
                let _ = LogonInfo::decode(b.data);
            }
        }
    }

    #[test]
    fn sid_strings_round_trip(auth in 0u64..(1 << 48), subs in prop::collection::vec(any::<u32>(), 0..=15)) {
        let sid = Sid::new(auth, &subs).unwrap();
        prop_assert_eq!(sid.to_string().parse::<Sid>().unwrap(), sid);
        prop_assert_eq!(Sid::from_bytes(&sid.to_bytes()).unwrap(), sid);
    }
}

/// Writes fuzz seeds when `IWA_PAC_SEEDS_DIR` is set (used to fill
/// `fuzz/corpus/pac_data/`); a no-op otherwise.
#[test]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("IWA_PAC_SEEDS_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spec_logon = info_buffers(SPEC_PAC).unwrap()[0].data.to_vec();
    let mut named = named_seeds();
    named.push(("ms_pac_section3_logon_info", spec_logon));
    named.push(("simple_logon_info", Kvi::simple().buffer()));
    for (name, data) in named {
        std::fs::write(dir.join(format!("{name}.bin")), data).unwrap();
    }
}

// ----- real PACs from a Samba AD DC --------------------------------------------
//
// Captured from the `iwa-testrealm` standard Samba DC (EXAMPLE.TEST, Samba
// 4.17 on Debian 12): `kinit alice`, a service ticket for
// HTTP/localhost, accepted by MIT krb5 1.20 with the service keytab, then
// `gss_get_name_attribute(name, "urn:mspac:")` (authenticated = 1). The
// `urn:mspac:logon-info` value was byte-identical to the type-1 buffer of
// this PAC. alice is in "Helpdesk Staff" (1107), itself in "All Staff"
// (1108); dave is in "Sales" (1109). SIDs checked against `samba-tool
// group show` / `user show` on the same DC.

const SAMBA_ALICE: &[u8] = include_bytes!("vectors/pac_samba_alice.bin");
const SAMBA_DAVE: &[u8] = include_bytes!("vectors/pac_samba_dave.bin");
const SAMBA_DOMAIN: &str = "S-1-5-21-2783248667-2769018209-2378106072";

#[test]
fn samba_pac_buffers() {
    let types: Vec<u32> = info_buffers(SAMBA_ALICE)
        .unwrap()
        .iter()
        .map(|b| b.buffer_type)
        .collect();
    assert_eq!(types, [1, 10, 12, 6, 7, 16, 19]);
    let pac = PacData::decode(SAMBA_ALICE).unwrap();
    assert_eq!(pac.client_info().unwrap().name, "alice");
    let upn = pac.upn_dns_info().unwrap();
    assert_eq!(upn.upn, "alice@example.test");
    assert_eq!(upn.dns_domain_name.to_ascii_uppercase(), "EXAMPLE.TEST");
    assert_eq!(upn.sam_name.as_deref(), Some("alice"));
    assert_eq!(upn.sid.unwrap().to_string(), format!("{SAMBA_DOMAIN}-1103"));
    for sig in [pac.server_checksum().unwrap(), pac.kdc_checksum().unwrap()] {
        // AES-only service account: HMAC-SHA1-96-AES256.
        assert_eq!(sig.signature_type, PacSignature::HMAC_SHA1_96_AES256);
        assert_eq!(sig.signature.len(), 12);
    }
    assert!(pac
        .buffers
        .iter()
        .any(|b| matches!(b, PacBuffer::TicketChecksum(_))));
    assert!(pac
        .buffers
        .iter()
        .any(|b| matches!(b, PacBuffer::ExtendedKdcChecksum(_))));
}

#[test]
fn samba_pac_nested_groups() {
    let pac = PacData::decode(SAMBA_ALICE).unwrap();
    let info = pac.logon_info().unwrap();
    assert_eq!(info.effective_name, "alice");
    assert_eq!(info.logon_domain_name, "EXAMPLE");
    assert_eq!(info.down_level_logon_name(), "EXAMPLE\\alice");
    assert_eq!(info.logon_domain_id.to_string(), SAMBA_DOMAIN);
    assert_eq!(info.user_id, 1103);
    assert_eq!(info.primary_group_id, 513);
    assert_eq!(
        info.user_sid().unwrap().to_string(),
        format!("{SAMBA_DOMAIN}-1103")
    );
    let sids: Vec<String> = info.group_sids().iter().map(Sid::to_string).collect();
    for rid in [513, 1107, 1108] {
        let want = format!("{SAMBA_DOMAIN}-{rid}");
        assert!(sids.contains(&want), "{want} missing from {sids:?}");
    }
    assert_eq!(sids[0], format!("{SAMBA_DOMAIN}-513"));
    assert!(!sids.contains(&format!("{SAMBA_DOMAIN}-1109")));
    // The attribute value MIT hands out decodes on its own to the same thing.
    let table = info_buffers(SAMBA_ALICE).unwrap();
    assert_eq!(LogonInfo::decode(table[0].data).as_ref(), Ok(info));

    let dave = PacData::decode(SAMBA_DAVE).unwrap();
    let dave = dave.logon_info().unwrap();
    assert_eq!(dave.effective_name, "dave");
    let sids: Vec<String> = dave.group_sids().iter().map(Sid::to_string).collect();
    assert!(sids.contains(&format!("{SAMBA_DOMAIN}-1109")));
    assert!(!sids.contains(&format!("{SAMBA_DOMAIN}-1107")));
}

#[test]
fn every_truncation_of_the_samba_logon_info_fails() {
    let buffer = info_buffers(SAMBA_ALICE).unwrap()[0].data;
    for n in 0..buffer.len() {
        assert!(
            LogonInfo::decode(&buffer[..n]).is_err(),
            "prefix of {n} bytes"
        );
    }
}

#[test]
fn samba_pac_groups_exactly() {
    let pac = PacData::decode(SAMBA_ALICE).unwrap();
    let info = pac.logon_info().unwrap();
    assert_eq!(info.user_flags, UserFlags(UserFlags::EXTRA_SIDS));
    let groups: Vec<(String, u32)> = info
        .groups()
        .iter()
        .map(|g| (g.sid.to_string(), g.attributes))
        .collect();
    assert_eq!(
        groups,
        [
            (format!("{SAMBA_DOMAIN}-513"), 7),
            (format!("{SAMBA_DOMAIN}-1107"), 7),
            (format!("{SAMBA_DOMAIN}-1108"), 7),
            // "Authentication authority asserted identity": Samba puts it in
            // ExtraSids of every AS-REQ-based ticket.
            ("S-1-18-1".to_string(), 7),
        ]
    );
}
