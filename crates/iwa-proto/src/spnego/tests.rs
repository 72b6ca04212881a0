use super::*;

/// `gss_init_sec_context` with the SPNEGO mech, MIT krb5 1.20 (python-gssapi),
/// throwaway realm IWA.TEST, target HTTP/localhost, mutual + out-of-sequence.
const MIT_SPNEGO_INIT: &[u8] = include_bytes!("../../tests/vectors/mit_spnego_init.bin");
/// The MIT acceptor's reply to [`MIT_SPNEGO_INIT`]: negState accept-completed,
/// supportedMech krb5, responseToken = AP-REP.
const MIT_SPNEGO_ACCEPT: &[u8] = include_bytes!("../../tests/vectors/mit_spnego_accept.bin");
/// Same client, raw krb5 mech (RFC 4121 framing, TOK_ID 01 00 = AP-REQ).
const MIT_KRB5_INIT: &[u8] = include_bytes!("../../tests/vectors/mit_krb5_init.bin");

/// Windows SSPI falling back to NTLM inside SPNEGO: NegTokenInit offering only
/// NTLMSSP, mechToken = NEGOTIATE_MESSAGE (flags 0xe2088297, version 10.0.17763).
const WINDOWS_NTLM_INIT: &[u8] = &[
    0x60, 0x48, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, 0xa0, 0x3e, 0x30, 0x3c, 0xa0, 0x0e,
    0x30, 0x0c, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a, 0xa2, 0x2a,
    0x04, 0x28, 0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, 0x01, 0x00, 0x00, 0x00, 0x97, 0x82,
    0x08, 0xe2, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x0a, 0x00, 0x63, 0x45, 0x00, 0x00, 0x00, 0x0f,
];

/// A CHALLENGE_MESSAGE (MS-NLMP §2.2.1.2): target name "DOMAIN", one AV pair.
fn ntlm_challenge() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"NTLMSSP\0");
    m.extend_from_slice(&[0x02, 0, 0, 0]); // MessageType
    m.extend_from_slice(&[0x0c, 0, 0x0c, 0, 0x38, 0, 0, 0]); // TargetNameFields
    m.extend_from_slice(&[0x15, 0x82, 0x89, 0xe2]); // NegotiateFlags
    m.extend_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]); // ServerChallenge
    m.extend_from_slice(&[0; 8]); // Reserved
    m.extend_from_slice(&[0x14, 0, 0x14, 0, 0x44, 0, 0, 0]); // TargetInfoFields
    m.extend_from_slice(&[0x0a, 0x00, 0x63, 0x45, 0, 0, 0, 0x0f]); // Version
    let domain: Vec<u8> = "DOMAIN".encode_utf16().flat_map(u16::to_le_bytes).collect();
    m.extend_from_slice(&domain);
    m.extend_from_slice(&[0x02, 0x00, 0x0c, 0x00]); // MsvAvNbDomainName
    m.extend_from_slice(&domain);
    m.extend_from_slice(&[0, 0, 0, 0]); // MsvAvEOL
    assert_eq!(m.len(), 0x58);
    m
}

/// What Windows (IIS/http.sys) sends as the second leg of NTLM inside SPNEGO.
fn windows_ntlm_challenge_resp() -> Vec<u8> {
    let mut t = vec![
        0xa1, 0x71, 0x30, 0x6f, // [1] NegTokenResp SEQUENCE
        0xa0, 0x03, 0x0a, 0x01, 0x01, // negState accept-incomplete
        0xa1, 0x0c, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02,
        0x0a, // NTLM
        0xa2, 0x5a, 0x04, 0x58, // responseToken
    ];
    t.extend_from_slice(&ntlm_challenge());
    assert_eq!(t.len(), 0x73);
    t
}

fn ntlm_authenticate() -> Vec<u8> {
    let mut m = b"NTLMSSP\0\x03\0\0\0".to_vec();
    m.resize(200, 0x11);
    m
}

/// The client's third leg: AUTHENTICATE_MESSAGE plus mechListMIC.
fn windows_ntlm_auth_resp() -> Vec<u8> {
    let mut t = vec![
        0xa1, 0x81, 0xea, 0x30, 0x81, 0xe7, // [1] SEQUENCE, long-form lengths
        0xa0, 0x03, 0x0a, 0x01, 0x01, // negState accept-incomplete
        0xa2, 0x81, 0xcb, 0x04, 0x81, 0xc8, // responseToken, 200 bytes
    ];
    t.extend_from_slice(&ntlm_authenticate());
    t.extend_from_slice(&[0xa3, 0x12, 0x04, 0x10]);
    t.extend_from_slice(&[
        0x01, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11, 0, 0, 0, 0,
    ]);
    assert_eq!(t.len(), 0xed);
    t
}

/// A Windows-shaped Kerberos NegTokenInit: MS-KRB5, KRB5, NEGOEX, NTLM offered,
/// with the (MIT-made) krb5 AP-REQ as mechToken.
fn windows_kerberos_init() -> Vec<u8> {
    let mut t = vec![
        0x60, 0x82, 0x03, 0x0f, // [APPLICATION 0]
        0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, // SPNEGO
        0xa0, 0x82, 0x03, 0x03, 0x30, 0x82, 0x02, 0xff, // negTokenInit SEQUENCE
        0xa0, 0x30, 0x30, 0x2e, // mechTypes
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02, // MS-KRB5
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, // KRB5
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x1e, // NEGOEX
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a, // NTLM
        0xa2, 0x82, 0x02, 0xc9, 0x04, 0x82, 0x02, 0xc5, // mechToken
    ];
    t.extend_from_slice(MIT_KRB5_INIT);
    assert_eq!(t.len(), 0x313);
    t
}

fn init(input: &[u8]) -> NegTokenInit<'_> {
    match decode_initial_token(input) {
        Ok(InitialToken::Spnego(init)) => init,
        other => panic!("expected a NegTokenInit, got {other:?}"),
    }
}

#[test]
fn mit_spnego_init() {
    assert_eq!(MIT_SPNEGO_INIT.len(), 752);
    let t = init(MIT_SPNEGO_INIT);
    assert_eq!(t.mech_types, vec![Oid(oids::KERBEROS)]);
    assert_eq!(t.preferred_mech(), Some(Mech::Kerberos));
    assert_eq!(t.req_flags, None);
    assert_eq!(t.mech_list_mic, None);
    assert_eq!(
        t.mech_types_der,
        &[0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02]
    );
    let token = t.mech_token.unwrap();
    assert_eq!(
        token,
        MIT_SPNEGO_INIT
            .get(MIT_SPNEGO_INIT.len() - token.len()..)
            .unwrap()
    );
    // The mechToken is itself a framed raw-Kerberos token.
    assert_eq!(
        decode_initial_token(token),
        Ok(InitialToken::Kerberos { token })
    );
    assert_eq!(encode_mech_type_list(&t.mech_types), t.mech_types_der);
}

#[test]
fn mit_raw_krb5_init() {
    assert_eq!(
        decode_initial_token(MIT_KRB5_INIT),
        Ok(InitialToken::Kerberos {
            token: MIT_KRB5_INIT
        })
    );
}

#[test]
fn mit_spnego_accept() {
    let r = decode_neg_token_resp(MIT_SPNEGO_ACCEPT).unwrap();
    assert_eq!(r.neg_state, Some(NegState::AcceptCompleted));
    assert_eq!(r.supported_mech.map(|o| o.mech()), Some(Mech::Kerberos));
    let ap_rep = r.response_token.unwrap();
    assert_eq!(ap_rep.len(), 156);
    assert_eq!(ap_rep.get(..2), Some(&[0x60, 0x81][..]));
    assert_eq!(r.mech_list_mic, None);
    // Our encoder produces the same bytes MIT does.
    assert_eq!(
        encode_neg_token_resp(
            Some(NegState::AcceptCompleted),
            Some(Mech::Kerberos),
            Some(ap_rep),
            None
        ),
        MIT_SPNEGO_ACCEPT
    );
}

#[test]
fn windows_ntlm_init() {
    let t = init(WINDOWS_NTLM_INIT);
    assert_eq!(t.mech_types, vec![Oid(oids::NTLM)]);
    assert_eq!(t.preferred_mech(), Some(Mech::Ntlm));
    let msg = t.mech_token.unwrap();
    assert!(msg.starts_with(NTLMSSP_SIGNATURE));
    assert_eq!(msg.len(), 40);
}

#[test]
fn windows_kerberos_init_with_four_mechs() {
    let input = windows_kerberos_init();
    let t = init(&input);
    let mechs: Vec<Mech> = t.mech_types.iter().map(Oid::mech).collect();
    assert_eq!(
        mechs,
        [Mech::MsKerberos, Mech::Kerberos, Mech::NegoEx, Mech::Ntlm]
    );
    assert_eq!(t.preferred_mech(), Some(Mech::MsKerberos));
    assert_eq!(t.mech_token, Some(MIT_KRB5_INIT));
    assert_eq!(t.mech_types_der.len(), 0x30);
    assert_eq!(t.mech_types_der.first(), Some(&0x30));
}

#[test]
fn windows_ntlm_challenge() {
    let input = windows_ntlm_challenge_resp();
    let r = decode_neg_token_resp(&input).unwrap();
    assert_eq!(r.neg_state, Some(NegState::AcceptIncomplete));
    assert_eq!(r.supported_mech, Some(Oid(oids::NTLM)));
    assert_eq!(r.response_token, Some(&ntlm_challenge()[..]));
    assert_eq!(r.mech_list_mic, None);
    assert_eq!(
        encode_neg_token_resp(
            Some(NegState::AcceptIncomplete),
            Some(Mech::Ntlm),
            Some(&ntlm_challenge()),
            None
        ),
        input
    );
}

#[test]
fn windows_ntlm_authenticate_with_mic() {
    let input = windows_ntlm_auth_resp();
    let r = decode_neg_token_resp(&input).unwrap();
    assert_eq!(r.neg_state, Some(NegState::AcceptIncomplete));
    assert_eq!(r.supported_mech, None);
    assert_eq!(r.response_token, Some(&ntlm_authenticate()[..]));
    assert_eq!(r.mech_list_mic.map(<[u8]>::len), Some(16));
    assert_eq!(r.encode(), input);
}

#[test]
fn bare_ntlmssp_under_negotiate() {
    let msg = WINDOWS_NTLM_INIT.get(34..).unwrap();
    assert_eq!(
        decode_initial_token(msg),
        Ok(InitialToken::Ntlmssp { message: msg })
    );
}

#[test]
fn rfc4178_encodings() {
    // negTokenResp reject, nothing else (RFC 4178 §5 step: "reject").
    let reject = [0xa1, 0x07, 0x30, 0x05, 0xa0, 0x03, 0x0a, 0x01, 0x02];
    assert_eq!(
        encode_neg_token_resp(Some(NegState::Reject), None, None, None),
        reject
    );
    let r = decode_neg_token_resp(&reject).unwrap();
    assert_eq!(r.neg_state, Some(NegState::Reject));
    // request-mic
    let r = decode_neg_token_resp(&[0xa1, 0x07, 0x30, 0x05, 0xa0, 0x03, 0x0a, 0x01, 0x03]).unwrap();
    assert_eq!(r.neg_state, Some(NegState::RequestMic));
    // An empty NegTokenResp (all fields optional).
    assert_eq!(
        decode_neg_token_resp(&[0xa1, 0x02, 0x30, 0x00]),
        Ok(NegTokenResp::default())
    );
    // Untagged SEQUENCE form.
    assert_eq!(
        decode_neg_token_resp(&[0x30, 0x05, 0xa0, 0x03, 0x0a, 0x01, 0x00])
            .unwrap()
            .neg_state,
        Some(NegState::AcceptCompleted)
    );
    // Unknown negState.
    assert_eq!(
        decode_neg_token_resp(&[0xa1, 0x07, 0x30, 0x05, 0xa0, 0x03, 0x0a, 0x01, 0x04]),
        Err(SpnegoError::InvalidNegState { value: 4 })
    );
}

#[test]
fn req_flags_and_mic_accepted() {
    // Java-style: reqFlags BIT STRING present, mechListMIC present.
    let token = encode_initial_token(
        &[Oid(oids::KERBEROS)],
        Some(0x60),
        Some(b"krb"),
        Some(b"mic"),
    );
    let t = init(&token);
    assert_eq!(t.req_flags, Some(0x60));
    assert_eq!(t.mech_token, Some(&b"krb"[..]));
    assert_eq!(t.mech_list_mic, Some(&b"mic"[..]));
    // reqFlags with explicit 32 bits and nonzero padding bits is still read.
    let flags_32 = [0xa1, 0x07, 0x03, 0x05, 0x00, 0x60, 0x00, 0x00, 0x00];
    let token = raw_init(&[&mech_types_field(&[oids::KERBEROS]), &flags_32]);
    assert_eq!(init(&token).req_flags, Some(0x60));
    // One octet with 5 unused bits whose padding is (wrongly) nonzero: masked.
    let flags_sloppy = [0xa1, 0x04, 0x03, 0x02, 0x05, 0x7f];
    let token = raw_init(&[&mech_types_field(&[oids::KERBEROS]), &flags_sloppy]);
    assert_eq!(init(&token).req_flags, Some(0x60));
    // More than 32 bits.
    let flags_40 = [0xa1, 0x08, 0x03, 0x06, 0x00, 0x60, 0x00, 0x00, 0x00, 0x00];
    let token = raw_init(&[&mech_types_field(&[oids::KERBEROS]), &flags_40]);
    assert_eq!(
        decode_initial_token(&token),
        Err(SpnegoError::InvalidReqFlags { octets: 5 })
    );
}

/// `[0] mechTypes` built by hand.
fn mech_types_field(oids: &[&[u8]]) -> Vec<u8> {
    let oids: Vec<Oid<'_>> = oids.iter().map(|o| Oid(o)).collect();
    der::tlv(Tag::context(0), &encode_mech_type_list(&oids))
}

/// A framed NegTokenInit from raw field encodings.
fn raw_init(fields: &[&[u8]]) -> Vec<u8> {
    let seq = der::tlv(Tag::SEQUENCE, &fields.concat());
    let mut inner = der::tlv(Tag::OID, oids::SPNEGO);
    der::write_tlv(&mut inner, Tag::context(0), &seq);
    der::tlv(Tag::APPLICATION_0, &inner)
}

#[test]
fn extension_fields_are_skipped() {
    let krb = mech_types_field(&[oids::KERBEROS]);
    let token = raw_init(&[
        &krb,
        &[0xa2, 0x03, 0x04, 0x01, 0x42],
        &[0xa5, 0x02, 0x05, 0x00],
        &[0xa7, 0x00],
    ]);
    let t = init(&token);
    assert_eq!(t.mech_token, Some(&[0x42][..]));
    let resp = [
        0xa1, 0x0b, 0x30, 0x09, 0xa0, 0x03, 0x0a, 0x01, 0x00, 0xa4, 0x02, 0x01, 0x00,
    ];
    assert_eq!(
        decode_neg_token_resp(&resp).unwrap().neg_state,
        Some(NegState::AcceptCompleted)
    );
}

#[test]
fn field_order_enforced() {
    let krb = mech_types_field(&[oids::KERBEROS]);
    let tok = [0xa2, 0x03, 0x04, 0x01, 0x42];
    assert_eq!(
        decode_initial_token(&raw_init(&[&tok, &krb])),
        Err(SpnegoError::FieldOutOfOrder {
            structure: "negTokenInit",
            field: 0,
            previous: 2
        })
    );
    assert_eq!(
        decode_initial_token(&raw_init(&[&krb, &tok, &tok])),
        Err(SpnegoError::FieldOutOfOrder {
            structure: "negTokenInit",
            field: 2,
            previous: 2
        })
    );
    assert_eq!(
        decode_initial_token(&raw_init(&[&krb, &[0x04, 0x00]])),
        Err(SpnegoError::UnexpectedField {
            structure: "negTokenInit",
            found: Tag::OCTET_STRING
        })
    );
    assert_eq!(
        decode_initial_token(&raw_init(&[&tok])),
        Err(SpnegoError::MissingField {
            structure: "negTokenInit",
            field: "mechTypes"
        })
    );
}

#[test]
fn negtokeninit2_is_rejected() {
    // MS-SPNG negTokenInit2: [3] negHints SEQUENCE { [0] hintName GeneralString }.
    let krb = mech_types_field(&[oids::KERBEROS]);
    let hints = [0xa3, 0x1c, 0x30, 0x1a, 0xa0, 0x18, 0x1b, 0x16];
    let mut neg_hints = hints.to_vec();
    neg_hints.extend_from_slice(b"not_defined_in_RFC4178");
    let err = decode_initial_token(&raw_init(&[&krb, &neg_hints])).unwrap_err();
    assert!(matches!(
        err,
        SpnegoError::Der(DerError::UnexpectedTag {
            expected: Tag::OCTET_STRING,
            found: Tag::SEQUENCE
        })
    ));
}

#[test]
fn mech_list_bounds() {
    assert_eq!(
        decode_initial_token(&raw_init(&[&[0xa0, 0x02, 0x30, 0x00]])),
        Err(SpnegoError::EmptyMechList)
    );
    let many = vec![oids::KERBEROS; MAX_MECH_TYPES + 1];
    assert_eq!(
        decode_initial_token(&raw_init(&[&mech_types_field(&many)])),
        Err(SpnegoError::TooManyMechs {
            count: MAX_MECH_TYPES + 1,
            max: MAX_MECH_TYPES
        })
    );
    let max = vec![oids::KERBEROS; MAX_MECH_TYPES];
    let token = raw_init(&[&mech_types_field(&max)]);
    assert_eq!(init(&token).mech_types.len(), MAX_MECH_TYPES);
    // A non-OID inside mechTypes.
    let bad = [0xa0, 0x04, 0x30, 0x02, 0x04, 0x00];
    assert!(matches!(
        decode_initial_token(&raw_init(&[&bad])),
        Err(SpnegoError::Der(DerError::UnexpectedTag {
            expected: Tag::OID,
            ..
        }))
    ));
}

#[test]
fn truncated_at_every_offset_is_an_error() {
    let vectors: Vec<Vec<u8>> = vec![
        MIT_SPNEGO_INIT.to_vec(),
        MIT_KRB5_INIT.to_vec(),
        WINDOWS_NTLM_INIT.to_vec(),
        windows_kerberos_init(),
    ];
    for v in &vectors {
        for cut in 0..v.len() {
            let prefix = v.get(..cut).unwrap();
            assert!(
                decode_initial_token(prefix).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
    }
    let resps: Vec<Vec<u8>> = vec![
        MIT_SPNEGO_ACCEPT.to_vec(),
        windows_ntlm_challenge_resp(),
        windows_ntlm_auth_resp(),
    ];
    for v in &resps {
        for cut in 0..v.len() {
            let prefix = v.get(..cut).unwrap();
            assert!(
                decode_neg_token_resp(prefix).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
    }
}

#[test]
fn trailing_bytes_rejected() {
    let mut v = WINDOWS_NTLM_INIT.to_vec();
    v.push(0);
    assert_eq!(
        decode_initial_token(&v),
        Err(SpnegoError::Der(DerError::TrailingData { len: 1 }))
    );
    let mut v = windows_ntlm_challenge_resp();
    v.extend_from_slice(&[0x05, 0x00]);
    assert_eq!(
        decode_neg_token_resp(&v),
        Err(SpnegoError::Der(DerError::TrailingData { len: 2 }))
    );
}

#[test]
fn wrong_outer_oid() {
    // Same framing, thisMech = 1.3.6.1.5.5.14 (SPKM) instead of SPNEGO.
    let mut v = WINDOWS_NTLM_INIT.to_vec();
    if let Some(b) = v.get_mut(9) {
        *b = 0x0e;
    }
    assert_eq!(
        decode_initial_token(&v),
        Err(SpnegoError::UnsupportedMech {
            oid: "1.3.6.1.5.5.14".into()
        })
    );
    // thisMech = NTLM OID: not a valid framed initial token.
    let framed = der::tlv(
        Tag::APPLICATION_0,
        &[&der::tlv(Tag::OID, oids::NTLM)[..], b"NTLMSSP\0"].concat(),
    );
    assert!(matches!(
        decode_initial_token(&framed),
        Err(SpnegoError::UnsupportedMech { .. })
    ));
    // Not framed at all.
    assert_eq!(
        decode_initial_token(&[0x30, 0x00]),
        Err(SpnegoError::NotGssToken { first_byte: 0x30 })
    );
    // Framed SPNEGO holding a negTokenResp.
    let resp = [
        0x60, 0x0c, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, 0xa1, 0x02, 0x30, 0x00,
    ];
    assert!(matches!(
        decode_initial_token(&resp),
        Err(SpnegoError::NotNegTokenInit { .. })
    ));
    // Framing with an OID and no inner token.
    let empty = [0x60, 0x08, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
    assert!(matches!(
        decode_initial_token(&empty),
        Err(SpnegoError::MissingField { .. })
    ));
    // NegTokenResp decoder given an initial token.
    assert_eq!(
        decode_neg_token_resp(WINDOWS_NTLM_INIT),
        Err(SpnegoError::NotNegTokenResp {
            found: Tag::APPLICATION_0
        })
    );
}

#[test]
fn indefinite_length_and_overflow() {
    let indefinite = [
        0x60, 0x80, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, 0x00, 0x00,
    ];
    assert_eq!(
        decode_initial_token(&indefinite),
        Err(SpnegoError::Der(DerError::IndefiniteLength))
    );
    let huge = [0x60, 0x84, 0xff, 0xff, 0xff, 0xf0, 0x06];
    assert!(matches!(
        decode_initial_token(&huge),
        Err(SpnegoError::Der(DerError::Truncated { .. }))
    ));
    let too_many_octets = [0x60, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x06];
    assert!(matches!(
        decode_initial_token(&too_many_octets),
        Err(SpnegoError::Der(DerError::LengthTooLarge { octets: 9, .. }))
    ));
    let resp_indefinite = [0xa1, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00];
    assert_eq!(
        decode_neg_token_resp(&resp_indefinite),
        Err(SpnegoError::Der(DerError::IndefiniteLength))
    );
}

#[test]
fn oversized_input_rejected_up_front() {
    let mut big = windows_kerberos_init();
    big.resize(100 * 1024, 0);
    assert_eq!(
        decode_initial_token(&big),
        Err(SpnegoError::TooLong {
            len: 100 * 1024,
            max: MAX_TOKEN_LEN
        })
    );
    assert!(matches!(
        decode_neg_token_resp(&big),
        Err(SpnegoError::TooLong { .. })
    ));
    // Just under the bound: a valid token with a big mechToken decodes.
    let token = vec![0x42; MAX_TOKEN_LEN - 100];
    let framed = encode_initial_token(&[Oid(oids::KERBEROS)], None, Some(&token), None);
    assert!(framed.len() <= MAX_TOKEN_LEN);
    assert_eq!(init(&framed).mech_token, Some(&token[..]));
    assert_eq!(decode_initial_token(&[]), Err(SpnegoError::Empty));
    assert_eq!(decode_neg_token_resp(&[]), Err(SpnegoError::Empty));
}

#[test]
fn nested_depth_bomb() {
    // 20 000 nested [0] wrappers in the mechTypes position: fails fast on the
    // schema (expects SEQUENCE inside [0]); no recursion.
    let mut bomb = vec![0x05, 0x00];
    for _ in 0..20_000 {
        bomb = der::tlv(Tag::context(0), &bomb);
        if bomb.len() > MAX_TOKEN_LEN - 64 {
            break;
        }
    }
    assert!(decode_initial_token(&raw_init(&[&bomb])).is_err());
    // A deep nest of SEQUENCEs inside an extension field is skipped as one element.
    let mut deep = vec![0x05, 0x00];
    for _ in 0..1000 {
        deep = der::tlv(Tag::SEQUENCE, &deep);
    }
    let ext = der::tlv(Tag::context(9), &deep);
    let token = raw_init(&[&mech_types_field(&[oids::KERBEROS]), &ext]);
    assert_eq!(init(&token).mech_types.len(), 1);
    // Nested framing: 60 .. 60 .. 60 ..
    let mut framing = vec![0x05, 0x00];
    for _ in 0..1000 {
        framing = der::tlv(Tag::APPLICATION_0, &framing);
    }
    assert!(decode_initial_token(&framing).is_err());
    // Indefinite-length depth bomb, as in CVE-style BER decoders.
    let bomb: Vec<u8> = std::iter::repeat_n([0xa0, 0x80], 30_000)
        .flatten()
        .collect();
    assert!(decode_neg_token_resp(&bomb).is_err());
}

#[test]
fn oid_dotted() {
    assert_eq!(Oid(oids::KERBEROS).to_dotted(), "1.2.840.113554.1.2.2");
    assert_eq!(Oid(oids::MS_KERBEROS).to_dotted(), "1.2.840.48018.1.2.2");
    assert_eq!(
        Oid(oids::KERBEROS_U2U).to_dotted(),
        "1.2.840.113554.1.2.2.3"
    );
    assert_eq!(Oid(oids::NTLM).to_dotted(), "1.3.6.1.4.1.311.2.2.10");
    assert_eq!(Oid(oids::NEGOEX).to_dotted(), "1.3.6.1.4.1.311.2.2.30");
    assert_eq!(Oid(oids::SPNEGO).to_string(), "1.3.6.1.5.5.2");
    assert_eq!(Oid(&[0x00]).to_dotted(), "0.0");
    assert_eq!(Oid(&[0x88, 0x37, 0x03]).to_dotted(), "2.999.3");
    assert_eq!(Oid(&[]).to_dotted(), "invalid-oid:");
    assert_eq!(Oid(&[0x2b, 0x86]).to_dotted(), "invalid-oid:2b86");
    let overflow = [0xff; 12];
    let mut v = overflow.to_vec();
    v.push(0x01);
    assert!(Oid(&v).to_dotted().starts_with("invalid-oid:"));
}

#[test]
fn mech_oids_roundtrip() {
    for m in [
        Mech::Kerberos,
        Mech::MsKerberos,
        Mech::Kerberos5User2User,
        Mech::Ntlm,
        Mech::NegoEx,
        Mech::Spnego,
    ] {
        assert_eq!(m.oid().map(|o| o.mech()), Some(m));
    }
    assert_eq!(Mech::Other.oid(), None);
    assert_eq!(Oid(&[0x2b, 0x06]).mech(), Mech::Other);
    // Mech::Other is omitted from the encoding.
    assert_eq!(
        encode_neg_token_resp(None, Some(Mech::Other), None, None),
        [0xa1, 0x02, 0x30, 0x00]
    );
}

#[test]
fn error_display_is_actionable() {
    let e = SpnegoError::Der(DerError::Truncated {
        needed: 700,
        remaining: 12,
    });
    assert_eq!(
        e.to_string(),
        "malformed SPNEGO token: DER input truncated: needed 700 more bytes, only 12 remain (the token was cut short or its length field is corrupt)"
    );
    let e = SpnegoError::UnsupportedMech {
        oid: "1.3.6.1.5.5.14".into(),
    };
    assert!(e.to_string().contains("1.3.6.1.5.5.14"));
    let e = SpnegoError::Der(DerError::UnexpectedTag {
        expected: Tag::OID,
        found: Tag::context(2),
    });
    assert!(e
        .to_string()
        .contains("expected tag 0x06 OBJECT IDENTIFIER, found 0xa2 [2]"));
}
