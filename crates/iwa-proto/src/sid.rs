//! Windows security identifiers (SIDs), [MS-DTYP] §2.4.2.
//!
//! A [`Sid`] is a revision (always 1), a 48-bit identifier authority and
//! at most [`MAX_SUB_AUTHORITIES`] 32-bit sub-authorities, the last of which
//! is usually a RID. It is stored inline (no allocation), so holding
//! thousands of them costs no more than their size.
//!
//! Three encodings:
//! - the binary form of §2.4.2.2 ([`Sid::from_bytes`], [`Sid::to_bytes`]):
//!   `Revision`, `SubAuthorityCount`, `IdentifierAuthority` (6 bytes,
//!   big-endian), then `SubAuthorityCount` little-endian `u32`s;
//! - the NDR `RPC_SID` of §2.4.2.3, which is the binary form preceded by the
//!   conformant array's max count; that one is read by the PAC decoder
//!   ([`crate::pac`]), which checks the count against `SubAuthorityCount`;
//! - the string form of §2.4.2.1 (`S-1-5-21-…`) through [`std::fmt::Display`]
//!   and [`std::str::FromStr`]: the authority is decimal below 2^32 and
//!   `0x` + 12 hex digits above, as Windows prints it.

use std::fmt;
use std::str::FromStr;

/// The most sub-authorities a SID may have ([MS-DTYP] §2.4.2.2).
pub const MAX_SUB_AUTHORITIES: usize = 15;

/// The only SID revision defined.
pub const SID_REVISION: u8 = 1;

/// Length of the binary form of a SID with `sub_authorities` sub-authorities.
pub const fn binary_len(sub_authorities: usize) -> usize {
    8 + 4 * sub_authorities
}

/// Why a SID was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    /// The binary form ends early.
    #[error("SID truncated: needed {needed} bytes, only {remaining} remain")]
    Truncated {
        /// Bytes the SID needs.
        needed: usize,
        /// Bytes available.
        remaining: usize,
    },
    /// Bytes left over after a binary SID whose length was given.
    #[error("SID is {found} bytes but its SubAuthorityCount makes it {expected}")]
    LengthMismatch {
        /// Length implied by `SubAuthorityCount`.
        expected: usize,
        /// Length given.
        found: usize,
    },
    /// `Revision` is not 1.
    #[error("SID revision {found} is not supported (only revision 1 exists)")]
    UnsupportedRevision {
        /// The revision found.
        found: u8,
    },
    /// More than [`MAX_SUB_AUTHORITIES`] sub-authorities.
    #[error("SID has {count} sub-authorities, more than the {MAX_SUB_AUTHORITIES} allowed")]
    TooManySubAuthorities {
        /// The count found (or that appending a RID would give).
        count: usize,
    },
    /// A string that does not start with `S-`.
    #[error("not a SID string (it must start with \"S-\")")]
    NotSidString,
    /// A string component (revision, authority or sub-authority) that is not
    /// a number in range.
    #[error("SID string component {index} is not a valid number")]
    BadComponent {
        /// 0 = revision, 1 = authority, 2.. = sub-authorities.
        index: usize,
    },
    /// An identifier authority larger than 48 bits.
    #[error("SID identifier authority does not fit in 48 bits")]
    AuthorityOutOfRange,
}

/// A security identifier ([MS-DTYP] §2.4.2).
///
/// Equality, hashing and ordering consider the revision, the authority and
/// the sub-authorities in use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid {
    revision: u8,
    authority: [u8; 6],
    count: u8,
    /// Entries at and after `count` are always zero, so the derived
    /// `PartialEq`/`Hash` see only the sub-authorities in use.
    sub: [u32; MAX_SUB_AUTHORITIES],
}

impl Sid {
    /// A revision-1 SID from its authority (only the low 48 bits may be set)
    /// and sub-authorities.
    pub fn new(authority: u64, sub_authorities: &[u32]) -> Result<Sid, SidError> {
        if authority >> 48 != 0 {
            return Err(SidError::AuthorityOutOfRange);
        }
        let bytes = authority.to_be_bytes();
        let mut auth = [0u8; 6];
        auth.copy_from_slice(bytes.get(2..).unwrap_or(&[0; 6]));
        Self::from_parts(SID_REVISION, auth, sub_authorities)
    }

    fn from_parts(revision: u8, authority: [u8; 6], subs: &[u32]) -> Result<Sid, SidError> {
        if revision != SID_REVISION {
            return Err(SidError::UnsupportedRevision { found: revision });
        }
        if subs.len() > MAX_SUB_AUTHORITIES {
            return Err(SidError::TooManySubAuthorities { count: subs.len() });
        }
        let mut sub = [0u32; MAX_SUB_AUTHORITIES];
        for (slot, value) in sub.iter_mut().zip(subs) {
            *slot = *value;
        }
        Ok(Sid {
            revision,
            authority,
            // Cannot truncate: at most MAX_SUB_AUTHORITIES (15).
            count: u8::try_from(subs.len())
                .map_err(|_| SidError::TooManySubAuthorities { count: subs.len() })?,
            sub,
        })
    }

    /// Decodes the binary form of [MS-DTYP] §2.4.2.2; `bytes` must be exactly
    /// one SID.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sid, SidError> {
        let (sid, used) = Self::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(SidError::LengthMismatch {
                expected: used,
                found: bytes.len(),
            });
        }
        Ok(sid)
    }

    /// Decodes the binary SID at the start of `bytes`; returns it and the
    /// number of bytes it used.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Sid, usize), SidError> {
        let truncated = |needed: usize| SidError::Truncated {
            needed,
            remaining: bytes.len(),
        };
        let (&revision, rest) = bytes.split_first().ok_or(truncated(8))?;
        let (&count, rest) = rest.split_first().ok_or(truncated(8))?;
        let count = usize::from(count);
        if revision != SID_REVISION {
            return Err(SidError::UnsupportedRevision { found: revision });
        }
        if count > MAX_SUB_AUTHORITIES {
            return Err(SidError::TooManySubAuthorities { count });
        }
        let len = binary_len(count);
        let authority: [u8; 6] = rest
            .get(..6)
            .and_then(|a| a.try_into().ok())
            .ok_or(truncated(len))?;
        let body = rest.get(6..6 + 4 * count).ok_or(truncated(len))?;
        let mut subs = [0u32; MAX_SUB_AUTHORITIES];
        for (slot, chunk) in subs.iter_mut().zip(body.chunks_exact(4)) {
            let mut le = [0u8; 4];
            le.copy_from_slice(chunk);
            *slot = u32::from_le_bytes(le);
        }
        let sid = Self::from_parts(revision, authority, subs.get(..count).unwrap_or(&[]))?;
        Ok((sid, len))
    }

    /// The binary form of [MS-DTYP] §2.4.2.2.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(binary_len(self.sub_authorities().len()));
        out.push(self.revision);
        out.push(self.count);
        out.extend_from_slice(&self.authority);
        for s in self.sub_authorities() {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// The revision (always 1).
    pub fn revision(&self) -> u8 {
        self.revision
    }

    /// The identifier authority as its six big-endian bytes.
    pub fn identifier_authority(&self) -> [u8; 6] {
        self.authority
    }

    /// The identifier authority as a number (5 for `S-1-5-…`).
    pub fn authority(&self) -> u64 {
        self.authority
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }

    /// The sub-authorities in use.
    pub fn sub_authorities(&self) -> &[u32] {
        self.sub.get(..usize::from(self.count)).unwrap_or(&[])
    }

    /// The last sub-authority (the RID of an account or group SID), if any.
    pub fn rid(&self) -> Option<u32> {
        self.sub_authorities().last().copied()
    }

    /// This SID without its last sub-authority (the domain of an account
    /// SID), if it has one.
    pub fn parent(&self) -> Option<Sid> {
        let subs = self.sub_authorities();
        let (_, domain) = subs.split_last()?;
        Self::from_parts(self.revision, self.authority, domain).ok()
    }

    /// This (domain) SID with `rid` appended: the SID of the account or
    /// group `rid` of the domain. Fails only if the SID already has
    /// [`MAX_SUB_AUTHORITIES`] sub-authorities.
    pub fn with_rid(&self, rid: u32) -> Result<Sid, SidError> {
        let count = usize::from(self.count);
        let mut out = *self;
        let slot = out
            .sub
            .get_mut(count)
            .ok_or(SidError::TooManySubAuthorities { count: count + 1 })?;
        *slot = rid;
        out.count = self.count.saturating_add(1);
        Ok(out)
    }

    /// Whether `self` is `domain` followed by exactly one more sub-authority.
    pub fn is_in_domain(&self, domain: &Sid) -> bool {
        self.parent().as_ref() == Some(domain)
    }
}

impl PartialOrd for Sid {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sid {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.revision, self.authority, self.sub_authorities()).cmp(&(
            other.revision,
            other.authority,
            other.sub_authorities(),
        ))
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S-{}-", self.revision)?;
        let authority = self.authority();
        if authority >> 32 == 0 {
            write!(f, "{authority}")?;
        } else {
            write!(f, "0x{authority:012X}")?;
        }
        for s in self.sub_authorities() {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}

impl FromStr for Sid {
    type Err = SidError;

    /// Parses `S-1-<authority>(-<sub-authority>)*`: the `S` in either case,
    /// the authority in decimal or as `0x` + hex, sub-authorities in decimal.
    fn from_str(s: &str) -> Result<Sid, SidError> {
        let rest = s
            .strip_prefix("S-")
            .or_else(|| s.strip_prefix("s-"))
            .ok_or(SidError::NotSidString)?;
        let mut parts = rest.split('-');
        let revision = parts
            .next()
            .and_then(parse_decimal::<u8>)
            .ok_or(SidError::BadComponent { index: 0 })?;
        let authority_str = parts.next().ok_or(SidError::BadComponent { index: 1 })?;
        let authority = match authority_str
            .strip_prefix("0x")
            .or_else(|| authority_str.strip_prefix("0X"))
        {
            Some(hex) if !hex.is_empty() && hex.len() <= 12 => {
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(SidError::BadComponent { index: 1 });
                }
                u64::from_str_radix(hex, 16).map_err(|_| SidError::BadComponent { index: 1 })?
            }
            Some(_) => return Err(SidError::BadComponent { index: 1 }),
            None => {
                parse_decimal::<u64>(authority_str).ok_or(SidError::BadComponent { index: 1 })?
            }
        };
        if authority >> 48 != 0 {
            return Err(SidError::AuthorityOutOfRange);
        }
        let mut subs = [0u32; MAX_SUB_AUTHORITIES];
        let mut count = 0usize;
        for (i, part) in parts.enumerate() {
            let value =
                parse_decimal::<u32>(part).ok_or(SidError::BadComponent { index: i + 2 })?;
            let slot = subs
                .get_mut(count)
                .ok_or(SidError::TooManySubAuthorities { count: count + 1 })?;
            *slot = value;
            count += 1;
        }
        if revision != SID_REVISION {
            return Err(SidError::UnsupportedRevision { found: revision });
        }
        let mut auth = [0u8; 6];
        auth.copy_from_slice(authority.to_be_bytes().get(2..).unwrap_or(&[0; 6]));
        Sid::from_parts(revision, auth, subs.get(..count).unwrap_or(&[]))
    }
}

/// Digits only (no sign, no whitespace), at most 20 of them, in range of `T`.
fn parse_decimal<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let sid: Sid = "S-1-5-21-397955417-626881126-188441444-3392609"
            .parse()
            .unwrap();
        assert_eq!(sid.authority(), 5);
        assert_eq!(
            sid.sub_authorities(),
            &[21, 397955417, 626881126, 188441444, 3392609]
        );
        assert_eq!(
            sid.to_string(),
            "S-1-5-21-397955417-626881126-188441444-3392609"
        );
        assert_eq!(sid.rid(), Some(3392609));
        let domain = sid.parent().unwrap();
        assert_eq!(domain.to_string(), "S-1-5-21-397955417-626881126-188441444");
        assert_eq!(domain.with_rid(3392609).unwrap(), sid);
        assert!(sid.is_in_domain(&domain));
        assert!(!domain.is_in_domain(&sid));
    }

    #[test]
    fn binary_form_of_ms_dtyp() {
        // S-1-5-32-544 (BUILTIN\Administrators), [MS-DTYP] 2.4.2.2 layout.
        let bytes = [1, 2, 0, 0, 0, 0, 0, 5, 0x20, 0, 0, 0, 0x20, 0x02, 0, 0];
        let sid = Sid::from_bytes(&bytes).unwrap();
        assert_eq!(sid.to_string(), "S-1-5-32-544");
        assert_eq!(sid.to_bytes(), bytes);
        assert_eq!(
            Sid::from_bytes(&bytes[..15]),
            Err(SidError::Truncated {
                needed: 16,
                remaining: 15
            })
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            Sid::from_bytes(&long),
            Err(SidError::LengthMismatch {
                expected: 16,
                found: 17
            })
        );
        let mut rev2 = bytes;
        rev2[0] = 2;
        assert_eq!(
            Sid::from_bytes(&rev2),
            Err(SidError::UnsupportedRevision { found: 2 })
        );
    }

    #[test]
    fn sixteen_sub_authorities_are_refused() {
        let mut bytes = vec![1u8, 16, 0, 0, 0, 0, 0, 5];
        bytes.extend(std::iter::repeat_n(0u8, 64));
        assert_eq!(
            Sid::from_bytes(&bytes),
            Err(SidError::TooManySubAuthorities { count: 16 })
        );
        let fifteen: Vec<u32> = (1..=15).collect();
        let sid = Sid::new(5, &fifteen).unwrap();
        assert_eq!(
            sid.with_rid(16),
            Err(SidError::TooManySubAuthorities { count: 16 })
        );
        let text = format!("{sid}-16");
        assert_eq!(
            text.parse::<Sid>(),
            Err(SidError::TooManySubAuthorities { count: 16 })
        );
        assert!(Sid::new(5, &[0; 16]).is_err());
    }

    #[test]
    fn large_authority_prints_in_hex() {
        let sid = Sid::new(0x0000_1234_5678_9abc, &[1]).unwrap();
        assert_eq!(sid.to_string(), "S-1-0x123456789ABC-1");
        assert_eq!("S-1-0x123456789ABC-1".parse::<Sid>().unwrap(), sid);
        assert_eq!(Sid::new(1 << 48, &[]), Err(SidError::AuthorityOutOfRange));
        assert_eq!(
            "S-1-281474976710656".parse::<Sid>(),
            Err(SidError::AuthorityOutOfRange)
        );
    }

    #[test]
    fn bad_strings() {
        for (s, e) in [
            ("", SidError::NotSidString),
            ("X-1-5", SidError::NotSidString),
            ("S-", SidError::BadComponent { index: 0 }),
            ("S-1", SidError::BadComponent { index: 1 }),
            ("S-1-", SidError::BadComponent { index: 1 }),
            ("S-1-5-", SidError::BadComponent { index: 2 }),
            ("S-1-5-+3", SidError::BadComponent { index: 2 }),
            ("S-1-5-4294967296", SidError::BadComponent { index: 2 }),
            ("S-1-5- 1", SidError::BadComponent { index: 2 }),
            ("S-1-0x-1", SidError::BadComponent { index: 1 }),
            ("S-2-5-1", SidError::UnsupportedRevision { found: 2 }),
        ] {
            assert_eq!(s.parse::<Sid>(), Err(e), "{s:?}");
        }
        assert_eq!("s-1-5".parse::<Sid>().unwrap().to_string(), "S-1-5");
    }

    #[test]
    fn ordering_and_hash_ignore_unused_slots() {
        use std::collections::HashSet;
        let a: Sid = "S-1-5-21-1-2-3".parse().unwrap();
        let b = a.with_rid(0).unwrap().parent().unwrap();
        assert_eq!(a, b);
        let set: HashSet<Sid> = [a, b].into_iter().collect();
        assert_eq!(set.len(), 1);
        let c: Sid = "S-1-5-21-1-2-3-0".parse().unwrap();
        assert!(a < c);
        assert_ne!(a, c);
    }
}
