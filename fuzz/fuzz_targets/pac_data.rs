#![no_main]
//! A whole PAC (`PACTYPE`, the value of MIT's `urn:mspac:`): the buffer
//! table, every known buffer, and `LogonInfo::decode` on every buffer's bytes
//! whatever its type; the input itself also as a lone logon-info buffer (the
//! value of `urn:mspac:logon-info`). Whatever decodes must assemble SIDs
//! without panicking, and the two paths must agree.

use std::collections::HashSet;

use iwa_proto::pac::{info_buffers, LogonInfo, PacData, Sid, UpnDnsInfo};
use libfuzzer_sys::fuzz_target;

fn exercise(info: &LogonInfo) {
    let sids = info.group_sids();
    let unique: HashSet<&Sid> = sids.iter().collect();
    assert_eq!(unique.len(), sids.len(), "group_sids has duplicates");
    if let Some(user) = info.user_sid() {
        let _ = user.to_string();
    }
    let _ = info.down_level_logon_name();
}

fuzz_target!(|data: &[u8]| {
    match PacData::decode(data) {
        Ok(pac) => {
            if let Some(info) = pac.logon_info() {
                exercise(info);
                let table = info_buffers(data).expect("a decoded PAC's table decodes");
                let first = table
                    .iter()
                    .find(|b| b.buffer_type == 1)
                    .expect("a logon info came from a type-1 buffer");
                assert_eq!(LogonInfo::decode(first.data).as_ref(), Ok(info));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(table) = info_buffers(data) {
        for b in table {
            if let Ok(info) = LogonInfo::decode(b.data) {
                exercise(&info);
            }
            let _ = UpnDnsInfo::decode(b.data);
        }
    }
    if let Ok(info) = LogonInfo::decode(data) {
        exercise(&info);
    }
    if let Ok(sid) = Sid::from_bytes(data) {
        assert_eq!(sid.to_string().parse::<Sid>(), Ok(sid));
    }
});
