//! SPNEGO (RFC 4178) tokens as they arrive in `Authorization: Negotiate`.
//!
//! Decoding is strict about structure (DER via [`crate::der::Reader`], fields in
//! order, no duplicates, nothing trailing) and lenient where real clients
//! differ: `reqFlags` (a BIT STRING that RFC 4178 says to leave out but Java and
//! older clients send) and `mechListMIC` are accepted when present.
//!
//! **Extensibility.** `NegTokenInit` and `NegTokenResp` end with an ASN.1
//! extension marker (`...`), so a peer speaking a later revision may append
//! fields. Context-tagged fields with tag numbers above the last known one
//! (`[4]` and up) are therefore *skipped* (their contents are not inspected),
//! provided they still come in increasing tag order. Anything else that is not
//! a known field (a universal tag, a repeated or out-of-order field) is an
//! error. A consequence: MS-SPNG's server-only `negTokenInit2`, whose `[3]` is
//! `negHints` rather than an `OCTET STRING`, is rejected; clients never send it.

use std::fmt;

use crate::der::{self, DerError, Reader, Tag};

/// Reject SPNEGO input larger than this before looking at it (64 KiB). A
/// Kerberos AP-REQ with a large PAC is typically < 16 KiB; Windows' own
/// default `MaxTokenSize` is 48 000 bytes.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The most mechanisms accepted in a `mechTypes` list.
pub const MAX_MECH_TYPES: usize = 32;

/// Signature at the start of every NTLMSSP message (MS-NLMP §2.2.1).
pub const NTLMSSP_SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// DER contents of the well-known mechanism OIDs.
pub mod oids {
    /// 1.2.840.113554.1.2.2 — Kerberos V5 (RFC 4121)
    pub const KERBEROS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
    /// 1.2.840.48018.1.2.2 — Kerberos V5 as (mis)encoded by Windows 2000, still sent by Windows
    pub const MS_KERBEROS: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];
    /// 1.2.840.113554.1.2.2.3 — Kerberos V5 user-to-user
    pub const KERBEROS_U2U: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x03];
    /// 1.3.6.1.4.1.311.2.2.10 — NTLMSSP
    pub const NTLM: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];
    /// 1.3.6.1.4.1.311.2.2.30 — NEGOEX
    pub const NEGOEX: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x1e];
    /// 1.3.6.1.5.5.2 — SPNEGO
    pub const SPNEGO: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
}

/// A mechanism OID, as raw DER content bytes (without tag/length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Oid<'a>(pub &'a [u8]);

/// The mechanisms iwa knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mech {
    /// 1.2.840.113554.1.2.2
    Kerberos,
    /// 1.2.840.48018.1.2.2 (Microsoft's legacy Kerberos OID)
    MsKerberos,
    /// 1.2.840.113554.1.2.2.3
    Kerberos5User2User,
    /// 1.3.6.1.4.1.311.2.2.10
    Ntlm,
    /// 1.3.6.1.4.1.311.2.2.30
    NegoEx,
    /// 1.3.6.1.5.5.2
    Spnego,
    /// Any other OID.
    Other,
}

impl Mech {
    /// The OID of a named mechanism; `None` for [`Mech::Other`].
    pub const fn oid(self) -> Option<Oid<'static>> {
        match self {
            Mech::Kerberos => Some(Oid(oids::KERBEROS)),
            Mech::MsKerberos => Some(Oid(oids::MS_KERBEROS)),
            Mech::Kerberos5User2User => Some(Oid(oids::KERBEROS_U2U)),
            Mech::Ntlm => Some(Oid(oids::NTLM)),
            Mech::NegoEx => Some(Oid(oids::NEGOEX)),
            Mech::Spnego => Some(Oid(oids::SPNEGO)),
            Mech::Other => None,
        }
    }

    /// Whether this is one of the Kerberos OIDs (standard, Microsoft legacy, user-to-user).
    pub const fn is_kerberos(self) -> bool {
        matches!(
            self,
            Mech::Kerberos | Mech::MsKerberos | Mech::Kerberos5User2User
        )
    }

    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Mech::Kerberos => "Kerberos",
            Mech::MsKerberos => "Kerberos (MS legacy OID)",
            Mech::Kerberos5User2User => "Kerberos user-to-user",
            Mech::Ntlm => "NTLM",
            Mech::NegoEx => "NEGOEX",
            Mech::Spnego => "SPNEGO",
            Mech::Other => "other",
        }
    }
}

impl fmt::Display for Mech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Oid<'_> {
    /// Which known mechanism this OID names.
    pub fn mech(&self) -> Mech {
        match self.0 {
            oids::KERBEROS => Mech::Kerberos,
            oids::MS_KERBEROS => Mech::MsKerberos,
            oids::KERBEROS_U2U => Mech::Kerberos5User2User,
            oids::NTLM => Mech::Ntlm,
            oids::NEGOEX => Mech::NegoEx,
            oids::SPNEGO => Mech::Spnego,
            _ => Mech::Other,
        }
    }

    /// Dotted-decimal form, e.g. `1.2.840.113554.1.2.2`. Malformed encodings,
    /// or arcs beyond 64 bits, are rendered as `invalid-oid:<hex>`.
    pub fn to_dotted(&self) -> String {
        self.try_dotted().unwrap_or_else(|| {
            let mut s = String::from("invalid-oid:");
            for b in self.0 {
                s.push_str(&format!("{b:02x}"));
            }
            s
        })
    }

    fn try_dotted(&self) -> Option<String> {
        der::validate_oid(self.0).ok()?;
        let mut arcs: Vec<u64> = Vec::new();
        let mut acc: u64 = 0;
        for &b in self.0 {
            acc = acc.checked_mul(128)?.checked_add(u64::from(b & 0x7f))?;
            if b & 0x80 == 0 {
                arcs.push(acc);
                acc = 0;
            }
        }
        let (&first, rest) = arcs.split_first()?;
        let (a, b) = match first {
            0..=39 => (0, first),
            40..=79 => (1, first - 40),
            _ => (2, first - 80),
        };
        let mut s = format!("{a}.{b}");
        for arc in rest {
            s.push('.');
            s.push_str(&arc.to_string());
        }
        Some(s)
    }
}

impl fmt::Display for Oid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_dotted())
    }
}

/// Why a SPNEGO token was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpnegoError {
    /// No bytes at all.
    #[error("Negotiate token is empty")]
    Empty,
    /// Larger than [`MAX_TOKEN_LEN`]; rejected without parsing.
    #[error("Negotiate token is {len} bytes, more than the {max} accepted (a Kerberos ticket with a very large PAC, e.g. a user in very many groups, or garbage)")]
    TooLong {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The DER structure is malformed.
    #[error("malformed SPNEGO token: {0}")]
    Der(#[from] DerError),
    /// The initial token is neither GSS-API framed (`0x60`) nor an NTLMSSP message.
    #[error("Negotiate token starts with byte 0x{first_byte:02x}; expected a GSS-API token (0x60) or an NTLMSSP message")]
    NotGssToken {
        /// The first input byte.
        first_byte: u8,
    },
    /// The GSS-API framing names a mechanism other than SPNEGO or Kerberos.
    #[error("Negotiate token is for mechanism {oid}, which is not supported (only SPNEGO, Kerberos and NTLM are)")]
    UnsupportedMech {
        /// The mechanism OID, dotted.
        oid: String,
    },
    /// The SPNEGO initial token holds something other than a `negTokenInit`.
    #[error("initial SPNEGO token holds {found} instead of a negTokenInit [0]")]
    NotNegTokenInit {
        /// The NegotiationToken CHOICE tag found.
        found: Tag,
    },
    /// A token expected to be a `negTokenResp` is something else.
    #[error("SPNEGO token holds {found} instead of a negTokenResp ([1] or SEQUENCE)")]
    NotNegTokenResp {
        /// The first tag found.
        found: Tag,
    },
    /// A mandatory field is absent.
    #[error("SPNEGO {structure} lacks its mandatory {field} field")]
    MissingField {
        /// ASN.1 type name.
        structure: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A SEQUENCE member that is not a context-tagged field.
    #[error("SPNEGO {structure} contains unexpected element {found}")]
    UnexpectedField {
        /// ASN.1 type name.
        structure: &'static str,
        /// The offending tag.
        found: Tag,
    },
    /// Fields repeated or not in increasing tag order.
    #[error("SPNEGO {structure} field [{field}] follows field [{previous}]; fields must appear once, in order")]
    FieldOutOfOrder {
        /// ASN.1 type name.
        structure: &'static str,
        /// Tag number of the offending field.
        field: u8,
        /// Tag number of the field before it.
        previous: u8,
    },
    /// `mechTypes` is an empty list.
    #[error("SPNEGO negTokenInit offers no mechanisms (empty mechTypes)")]
    EmptyMechList,
    /// `mechTypes` longer than [`MAX_MECH_TYPES`].
    #[error("SPNEGO negTokenInit offers {count} mechanisms, more than the {max} accepted")]
    TooManyMechs {
        /// Number of mechanisms offered.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// `reqFlags` BIT STRING longer than the 32 bits RFC 4178 allows.
    #[error("SPNEGO reqFlags has {octets} octets; at most 4 (32 bits) are allowed")]
    InvalidReqFlags {
        /// Number of bit octets.
        octets: usize,
    },
    /// `negState` outside accept-completed(0)..request-mic(3).
    #[error("SPNEGO negState {value} is not one of 0..=3")]
    InvalidNegState {
        /// The value received.
        value: u32,
    },
}

/// The first token a client sends in `Authorization: Negotiate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialToken<'a> {
    /// RFC 2743 §3.1 framing `[APPLICATION 0]` with the SPNEGO OID, wrapping
    /// NegTokenInit (RFC 4178 §4.2.1).
    Spnego(NegTokenInit<'a>),
    /// RFC 2743-framed token whose thisMech is a Kerberos OID (raw Kerberos,
    /// RFC 4121 §4.1); `token` is the whole input.
    Kerberos {
        /// The whole input, framing included (what `gss_accept_sec_context` wants).
        token: &'a [u8],
    },
    /// Raw NTLMSSP message (starts with `b"NTLMSSP\0"`); some clients send it
    /// under the Negotiate scheme.
    Ntlmssp {
        /// The whole input.
        message: &'a [u8],
    },
}

/// RFC 4178 §4.2.1 `NegTokenInit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegTokenInit<'a> {
    /// `mechTypes`, in the client's order of preference; never empty.
    pub mech_types: Vec<Oid<'a>>,
    /// First octet of the `reqFlags` BIT STRING as transmitted (delegFlag is
    /// `0x80`, mutualFlag `0x40`, … integFlag `0x02`), unused bits cleared.
    pub req_flags: Option<u8>,
    /// `mechToken`: the optimistic token for the first of `mech_types`.
    pub mech_token: Option<&'a [u8]>,
    /// `mechListMIC`, if the client sent one.
    pub mech_list_mic: Option<&'a [u8]>,
    /// The DER encoding of the mechTypes SEQUENCE, tag and length included
    /// (the input to mechListMIC verification, RFC 4178 §5).
    pub mech_types_der: &'a [u8],
}

impl NegTokenInit<'_> {
    /// The mech the mechToken is for (first of mech_types).
    pub fn preferred_mech(&self) -> Option<Mech> {
        self.mech_types.first().map(Oid::mech)
    }
}

/// RFC 4178 §4.2.2 `negState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NegState {
    /// accept-completed (0)
    AcceptCompleted,
    /// accept-incomplete (1)
    AcceptIncomplete,
    /// reject (2)
    Reject,
    /// request-mic (3)
    RequestMic,
}

impl NegState {
    /// The ENUMERATED value.
    pub const fn value(self) -> u8 {
        match self {
            NegState::AcceptCompleted => 0,
            NegState::AcceptIncomplete => 1,
            NegState::Reject => 2,
            NegState::RequestMic => 3,
        }
    }

    /// From the ENUMERATED value.
    pub const fn from_value(value: u32) -> Option<Self> {
        match value {
            0 => Some(NegState::AcceptCompleted),
            1 => Some(NegState::AcceptIncomplete),
            2 => Some(NegState::Reject),
            3 => Some(NegState::RequestMic),
            _ => None,
        }
    }
}

/// RFC 4178 §4.2.2 `NegTokenResp`, e.g. the second leg of NTLM inside SPNEGO.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NegTokenResp<'a> {
    /// `negState`
    pub neg_state: Option<NegState>,
    /// `supportedMech`
    pub supported_mech: Option<Oid<'a>>,
    /// `responseToken`
    pub response_token: Option<&'a [u8]>,
    /// `mechListMIC`
    pub mech_list_mic: Option<&'a [u8]>,
}

impl NegTokenResp<'_> {
    /// DER-encode as the NegotiationToken CHOICE `[1]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut seq = Vec::new();
        if let Some(state) = self.neg_state {
            let mut enumerated = Vec::with_capacity(3);
            der::write_tlv(&mut enumerated, Tag::ENUMERATED, &[state.value()]);
            der::write_explicit(&mut seq, 0, &enumerated);
        }
        if let Some(oid) = self.supported_mech {
            der::write_explicit(&mut seq, 1, &der::tlv(Tag::OID, oid.0));
        }
        if let Some(token) = self.response_token {
            der::write_explicit(&mut seq, 2, &der::tlv(Tag::OCTET_STRING, token));
        }
        if let Some(mic) = self.mech_list_mic {
            der::write_explicit(&mut seq, 3, &der::tlv(Tag::OCTET_STRING, mic));
        }
        der::tlv(Tag::context(1), &der::tlv(Tag::SEQUENCE, &seq))
    }
}

fn check_len(input: &[u8]) -> Result<(), SpnegoError> {
    if input.is_empty() {
        return Err(SpnegoError::Empty);
    }
    if input.len() > MAX_TOKEN_LEN {
        return Err(SpnegoError::TooLong {
            len: input.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    Ok(())
}

/// Decode the first token of a Negotiate exchange.
///
/// Accepts an RFC 2743-framed SPNEGO `negTokenInit`, an RFC 2743-framed raw
/// Kerberos token, or a bare NTLMSSP message. Anything after the outer
/// `[APPLICATION 0]` element is an error.
pub fn decode_initial_token(input: &[u8]) -> Result<InitialToken<'_>, SpnegoError> {
    check_len(input)?;
    if input.starts_with(NTLMSSP_SIGNATURE) {
        return Ok(InitialToken::Ntlmssp { message: input });
    }
    let mut top = Reader::new(input);
    match top.peek_tag() {
        Some(Tag::APPLICATION_0) => {}
        Some(other) => {
            return Err(SpnegoError::NotGssToken {
                first_byte: other.0,
            })
        }
        None => return Err(SpnegoError::Empty),
    }
    let mut framed = top.read_nested(Tag::APPLICATION_0)?;
    top.expect_end()?;
    let this_mech = Oid(framed.read_oid()?);
    if framed.is_empty() {
        return Err(missing_inner_token());
    }
    match this_mech.mech() {
        Mech::Spnego => {}
        m if m.is_kerberos() => return Ok(InitialToken::Kerberos { token: input }),
        _ => {
            return Err(SpnegoError::UnsupportedMech {
                oid: this_mech.to_dotted(),
            })
        }
    }
    let init_tag = Tag::context(0);
    match framed.peek_tag() {
        Some(t) if t == init_tag => {}
        Some(found) => return Err(SpnegoError::NotNegTokenInit { found }),
        None => return Err(missing_inner_token()),
    }
    let mut choice = framed.read_nested(init_tag)?;
    framed.expect_end()?;
    let seq = choice.read_nested(Tag::SEQUENCE)?;
    choice.expect_end()?;
    parse_neg_token_init(seq).map(InitialToken::Spnego)
}

fn missing_inner_token() -> SpnegoError {
    SpnegoError::MissingField {
        structure: "InitialContextToken",
        field: "innerContextToken",
    }
}

/// Tracks that context-tagged fields come once each, in increasing order.
struct FieldOrder {
    structure: &'static str,
    previous: Option<u8>,
}

impl FieldOrder {
    fn new(structure: &'static str) -> Self {
        FieldOrder {
            structure,
            previous: None,
        }
    }

    /// The context number of the next field, after checking it.
    fn next(&mut self, tag: Tag) -> Result<u8, SpnegoError> {
        let n = tag.context_number().ok_or(SpnegoError::UnexpectedField {
            structure: self.structure,
            found: tag,
        })?;
        if let Some(previous) = self.previous {
            if n <= previous {
                return Err(SpnegoError::FieldOutOfOrder {
                    structure: self.structure,
                    field: n,
                    previous,
                });
            }
        }
        self.previous = Some(n);
        Ok(n)
    }
}

fn parse_neg_token_init(mut seq: Reader<'_>) -> Result<NegTokenInit<'_>, SpnegoError> {
    const STRUCTURE: &str = "negTokenInit";
    let mut order = FieldOrder::new(STRUCTURE);
    let mut mech_types = None;
    let mut req_flags = None;
    let mut mech_token = None;
    let mut mech_list_mic = None;
    while let Some(tag) = seq.peek_tag() {
        match order.next(tag)? {
            0 => {
                let list = seq.read_explicit(0, Tag::SEQUENCE)?;
                mech_types = Some((parse_mech_type_list(list.reader()?)?, list.raw()));
            }
            1 => {
                let (unused_bits, bits) = seq.read_nested(Tag::context(1)).and_then(|mut r| {
                    let bs = r.read_bit_string()?;
                    r.expect_end()?;
                    Ok(bs)
                })?;
                if bits.len() > 4 {
                    return Err(SpnegoError::InvalidReqFlags { octets: bits.len() });
                }
                let first = bits.first().copied().unwrap_or(0);
                let mask = if bits.len() == 1 {
                    0xffu8 << unused_bits
                } else {
                    0xff
                };
                req_flags = Some(first & mask);
            }
            2 => mech_token = Some(seq.read_explicit(2, Tag::OCTET_STRING)?.contents()),
            3 => mech_list_mic = Some(seq.read_explicit(3, Tag::OCTET_STRING)?.contents()),
            _ => {
                // RFC 4178 extension marker: skip later fields unseen.
                seq.read_element()?;
            }
        }
    }
    let (mech_types, mech_types_der) = mech_types.ok_or(SpnegoError::MissingField {
        structure: STRUCTURE,
        field: "mechTypes",
    })?;
    Ok(NegTokenInit {
        mech_types,
        req_flags,
        mech_token,
        mech_list_mic,
        mech_types_der,
    })
}

fn parse_mech_type_list(mut list: Reader<'_>) -> Result<Vec<Oid<'_>>, SpnegoError> {
    let mut mechs = Vec::new();
    while !list.is_empty() {
        if mechs.len() >= MAX_MECH_TYPES {
            return Err(SpnegoError::TooManyMechs {
                count: mechs.len().saturating_add(1),
                max: MAX_MECH_TYPES,
            });
        }
        mechs.push(Oid(list.read_oid()?));
    }
    if mechs.is_empty() {
        return Err(SpnegoError::EmptyMechList);
    }
    Ok(mechs)
}

/// Decode a `NegTokenResp` (RFC 4178 §4.2.2), e.g. the client's second NTLM
/// leg inside SPNEGO. Accepts the NegotiationToken CHOICE form (`[1]`
/// wrapping the SEQUENCE, what every client sends) and the bare SEQUENCE.
pub fn decode_neg_token_resp(input: &[u8]) -> Result<NegTokenResp<'_>, SpnegoError> {
    check_len(input)?;
    let mut top = Reader::new(input);
    let seq = match top.peek_tag() {
        Some(t) if t == Tag::context(1) => {
            let mut choice = top.read_nested(t)?;
            let seq = choice.read_nested(Tag::SEQUENCE)?;
            choice.expect_end()?;
            seq
        }
        Some(Tag::SEQUENCE) => top.read_nested(Tag::SEQUENCE)?,
        Some(found) => return Err(SpnegoError::NotNegTokenResp { found }),
        None => return Err(SpnegoError::Empty),
    };
    top.expect_end()?;
    parse_neg_token_resp(seq)
}

fn parse_neg_token_resp(mut seq: Reader<'_>) -> Result<NegTokenResp<'_>, SpnegoError> {
    let mut order = FieldOrder::new("negTokenResp");
    let mut resp = NegTokenResp::default();
    while let Some(tag) = seq.peek_tag() {
        match order.next(tag)? {
            0 => {
                let mut r = seq.read_nested(Tag::context(0))?;
                let value = r.read_enumerated()?;
                r.expect_end()?;
                resp.neg_state = Some(
                    NegState::from_value(value).ok_or(SpnegoError::InvalidNegState { value })?,
                );
            }
            1 => {
                let mut r = seq.read_nested(Tag::context(1))?;
                resp.supported_mech = Some(Oid(r.read_oid()?));
                r.expect_end()?;
            }
            2 => resp.response_token = Some(seq.read_explicit(2, Tag::OCTET_STRING)?.contents()),
            3 => resp.mech_list_mic = Some(seq.read_explicit(3, Tag::OCTET_STRING)?.contents()),
            _ => {
                // RFC 4178 extension marker: skip later fields unseen.
                seq.read_element()?;
            }
        }
    }
    Ok(resp)
}

/// DER-encode a `NegTokenResp` as the NegotiationToken CHOICE `[1]`.
///
/// `supported_mech` of [`Mech::Other`] has no OID and is omitted; use
/// [`NegTokenResp::encode`] to send an arbitrary OID.
pub fn encode_neg_token_resp(
    neg_state: Option<NegState>,
    supported_mech: Option<Mech>,
    response_token: Option<&[u8]>,
    mech_list_mic: Option<&[u8]>,
) -> Vec<u8> {
    NegTokenResp {
        neg_state,
        supported_mech: supported_mech.and_then(Mech::oid),
        response_token,
        mech_list_mic,
    }
    .encode()
}

/// DER encoding of a `MechTypeList` (the SEQUENCE OF OIDs), as covered by mechListMIC.
pub fn encode_mech_type_list(mech_types: &[Oid<'_>]) -> Vec<u8> {
    let mut list = Vec::new();
    for oid in mech_types {
        der::write_tlv(&mut list, Tag::OID, oid.0);
    }
    der::tlv(Tag::SEQUENCE, &list)
}

/// Build a complete initial SPNEGO token (RFC 2743 framing around a
/// `negTokenInit`), as a client would send it. `req_flags` is the first
/// ContextFlags octet (see [`NegTokenInit::req_flags`]).
pub fn encode_initial_token(
    mech_types: &[Oid<'_>],
    req_flags: Option<u8>,
    mech_token: Option<&[u8]>,
    mech_list_mic: Option<&[u8]>,
) -> Vec<u8> {
    let mut seq = Vec::new();
    der::write_explicit(&mut seq, 0, &encode_mech_type_list(mech_types));
    if let Some(flags) = req_flags {
        // DER named-bit-list: trailing zero bits are dropped.
        let bits = if flags == 0 {
            der::tlv(Tag::BIT_STRING, &[0])
        } else {
            // trailing_zeros of a non-zero u8 is at most 7
            der::tlv(Tag::BIT_STRING, &[flags.trailing_zeros() as u8, flags])
        };
        der::write_explicit(&mut seq, 1, &bits);
    }
    if let Some(token) = mech_token {
        der::write_explicit(&mut seq, 2, &der::tlv(Tag::OCTET_STRING, token));
    }
    if let Some(mic) = mech_list_mic {
        der::write_explicit(&mut seq, 3, &der::tlv(Tag::OCTET_STRING, mic));
    }
    let mut inner = der::tlv(Tag::OID, oids::SPNEGO);
    der::write_explicit(&mut inner, 0, &der::tlv(Tag::SEQUENCE, &seq));
    der::tlv(Tag::APPLICATION_0, &inner)
}

#[cfg(test)]
mod tests;
