//! Reading MIT keytab files (format version 0x0502) for `iwa check`: which principals,
//! key versions and encryption types a keytab holds. Bounded reads; never the key bytes
//! in any output.

use std::fmt;

/// One key in a keytab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeytabEntry {
    /// `comp1/comp2@REALM`.
    pub principal: String,
    pub kvno: u32,
    pub enctype: i32,
    /// Seconds since the epoch when the key was written.
    pub timestamp: u32,
}

impl KeytabEntry {
    pub fn enctype_name(&self) -> String {
        enctype_name(self.enctype)
    }
}

/// The name MIT uses for an encryption type number (RFC 3961/3962/8009, RFC 4757).
pub fn enctype_name(enctype: i32) -> String {
    match enctype {
        1 => "des-cbc-crc".into(),
        2 => "des-cbc-md4".into(),
        3 => "des-cbc-md5".into(),
        16 => "des3-cbc-sha1".into(),
        17 => "aes128-cts-hmac-sha1-96".into(),
        18 => "aes256-cts-hmac-sha1-96".into(),
        19 => "aes128-cts-hmac-sha256-128".into(),
        20 => "aes256-cts-hmac-sha384-192".into(),
        23 => "arcfour-hmac (RC4)".into(),
        24 => "arcfour-hmac-exp".into(),
        25 => "camellia128-cts-cmac".into(),
        26 => "camellia256-cts-cmac".into(),
        n => format!("enctype {n}"),
    }
}

/// How weak an encryption type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// Broken: single DES.
    Broken,
    /// Deprecated: RC4 (RFC 8429) and 3DES.
    Weak,
    Good,
}

pub fn enctype_strength(enctype: i32) -> Strength {
    match enctype {
        1..=3 => Strength::Broken,
        16 | 23 | 24 => Strength::Weak,
        _ => Strength::Good,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeytabError {
    Empty,
    UnsupportedVersion(u16),
    Truncated { offset: usize },
    EntryTooShort { offset: usize },
}

impl fmt::Display for KeytabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeytabError::Empty => f.write_str("the keytab file is empty"),
            KeytabError::UnsupportedVersion(v) => write!(
                f,
                "not an MIT keytab (format version {v:#06x}; expected 0x0502)"
            ),
            KeytabError::Truncated { offset } => {
                write!(f, "the keytab is truncated (entry at byte {offset})")
            }
            KeytabError::EntryTooShort { offset } => {
                write!(f, "malformed keytab entry at byte {offset}")
            }
        }
    }
}

impl std::error::Error for KeytabError {}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|s| s.first().copied())
    }
    fn u16(&mut self) -> Option<u16> {
        let s = self.take(2)?;
        Some(u16::from_be_bytes(s.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_be_bytes(s.try_into().ok()?))
    }
    fn counted(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// Parses a keytab file's bytes.
pub fn parse(data: &[u8]) -> Result<Vec<KeytabEntry>, KeytabError> {
    let mut r = Reader { buf: data, pos: 0 };
    let version = r.u16().ok_or(KeytabError::Empty)?;
    if version != 0x0502 {
        return Err(KeytabError::UnsupportedVersion(version));
    }
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let offset = r.pos;
        let len = r.u32().ok_or(KeytabError::Truncated { offset })? as i32;
        if len == 0 {
            // MIT writes zero-length padding at the end of a keytab after deletions.
            break;
        }
        let body = r
            .take(len.unsigned_abs() as usize)
            .ok_or(KeytabError::Truncated { offset })?;
        if len < 0 {
            continue; // a hole left by a deleted entry
        }
        out.push(parse_entry(body).ok_or(KeytabError::EntryTooShort { offset })?);
    }
    Ok(out)
}

fn parse_entry(body: &[u8]) -> Option<KeytabEntry> {
    let mut e = Reader { buf: body, pos: 0 };
    let ncomp = e.u16()?;
    let realm = String::from_utf8_lossy(e.counted()?).into_owned();
    let mut comps = Vec::with_capacity(usize::from(ncomp.min(16)));
    for _ in 0..ncomp {
        comps.push(String::from_utf8_lossy(e.counted()?).into_owned());
    }
    let _name_type = e.u32()?;
    let timestamp = e.u32()?;
    let vno8 = e.u8()?;
    let enctype = e.u16()? as i16 as i32;
    let _key = e.counted()?;
    let kvno = match e.u32() {
        Some(v) if v != 0 => v,
        _ => u32::from(vno8),
    };
    Some(KeytabEntry {
        principal: format!("{}@{realm}", comps.join("/")),
        kvno,
        enctype,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        comps: &[&str],
        realm: &str,
        kvno: u8,
        enctype: u16,
        key: &[u8],
        vno32: Option<u32>,
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(comps.len() as u16).to_be_bytes());
        b.extend_from_slice(&(realm.len() as u16).to_be_bytes());
        b.extend_from_slice(realm.as_bytes());
        for c in comps {
            b.extend_from_slice(&(c.len() as u16).to_be_bytes());
            b.extend_from_slice(c.as_bytes());
        }
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        b.push(kvno);
        b.extend_from_slice(&enctype.to_be_bytes());
        b.extend_from_slice(&(key.len() as u16).to_be_bytes());
        b.extend_from_slice(key);
        if let Some(v) = vno32 {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let mut rec = (b.len() as i32).to_be_bytes().to_vec();
        rec.extend(b);
        rec
    }

    #[test]
    fn parses_entries_holes_and_vno32() {
        let mut kt = vec![0x05, 0x02];
        kt.extend(entry(
            &["HTTP", "localhost"],
            "IWA.TEST",
            2,
            18,
            &[7; 32],
            Some(2),
        ));
        kt.extend((-6i32).to_be_bytes());
        kt.extend([0u8; 6]);
        kt.extend(entry(
            &["HTTP", "localhost"],
            "IWA.TEST",
            3,
            23,
            &[9; 16],
            Some(300),
        ));
        kt.extend(0i32.to_be_bytes());
        let got = parse(&kt).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].principal, "HTTP/localhost@IWA.TEST");
        assert_eq!(got[0].kvno, 2);
        assert_eq!(got[0].enctype_name(), "aes256-cts-hmac-sha1-96");
        assert_eq!(got[1].kvno, 300);
        assert_eq!(enctype_strength(got[1].enctype), Strength::Weak);
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert_eq!(parse(&[]), Err(KeytabError::Empty));
        assert_eq!(
            parse(&[0x05, 0x01]),
            Err(KeytabError::UnsupportedVersion(0x0501))
        );
        let mut kt = vec![0x05, 0x02];
        kt.extend(entry(&["HTTP", "x"], "R", 1, 18, &[1; 32], None));
        assert_eq!(
            parse(&kt[..2]),
            Ok(vec![]),
            "a header alone is an empty keytab"
        );
        for cut in 3..kt.len() {
            assert!(parse(&kt[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = vec![0x05, 0x02];
        huge.extend(i32::MAX.to_be_bytes());
        assert!(parse(&huge).is_err());
        let mut neg = vec![0x05, 0x02];
        neg.extend(i32::MIN.to_be_bytes());
        assert!(parse(&neg).is_err());
    }
}
