//! Property tests: no input makes a parser panic, and encoders round-trip.

use iwa_proto::authz::{challenge_value, parse_authorization, ChallengeScheme, Credentials};
use iwa_proto::spnego::{
    decode_initial_token, decode_neg_token_resp, encode_initial_token, encode_neg_token_resp, oids,
    InitialToken, Mech, NegState, NegTokenResp, Oid, MAX_MECH_TYPES,
};
use proptest::prelude::*;

const MIT_SPNEGO_INIT: &[u8] = include_bytes!("vectors/mit_spnego_init.bin");
const MIT_SPNEGO_ACCEPT: &[u8] = include_bytes!("vectors/mit_spnego_accept.bin");
const MIT_KRB5_INIT: &[u8] = include_bytes!("vectors/mit_krb5_init.bin");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    }
}

/// A mutation applied to a valid token.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Set { at: usize, value: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        (
            any::<usize>(),
            prop_oneof![
                Just(0x00u8),
                Just(0x80),
                Just(0x84),
                Just(0xff),
                any::<u8>()
            ]
        )
            .prop_map(|(at, value)| Mutation::Set { at, value }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(base: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut v = base.to_vec();
    for m in mutations {
        let n = v.len().max(1);
        match m {
            Mutation::Flip { at, xor } => {
                if let Some(b) = v.get_mut(at % n) {
                    *b ^= xor;
                }
            }
            Mutation::Set { at, value } => {
                if let Some(b) = v.get_mut(at % n) {
                    *b = *value;
                }
            }
            Mutation::Insert { at, bytes } => {
                let at = at % (v.len() + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let at = at % n;
                let end = (at + len).min(v.len());
                if at < end {
                    v.drain(at..end);
                }
            }
            Mutation::Truncate { at } => v.truncate(at % n),
        }
    }
    v
}

fn ntlm_resp() -> Vec<u8> {
    encode_neg_token_resp(
        Some(NegState::AcceptIncomplete),
        Some(Mech::Ntlm),
        Some(b"NTLMSSP\0\x02\0\0\0 a challenge message body"),
        None,
    )
}

fn init_vectors() -> Vec<Vec<u8>> {
    vec![
        MIT_SPNEGO_INIT.to_vec(),
        MIT_KRB5_INIT.to_vec(),
        encode_initial_token(
            &[
                Oid(oids::MS_KERBEROS),
                Oid(oids::KERBEROS),
                Oid(oids::NEGOEX),
                Oid(oids::NTLM),
            ],
            Some(0x60),
            Some(MIT_KRB5_INIT),
            Some(&[0x11; 16]),
        ),
        encode_initial_token(
            &[Oid(oids::NTLM)],
            None,
            Some(b"NTLMSSP\0\x01\0\0\0\x97\x82\x08\xe2"),
            None,
        ),
    ]
}

fn resp_vectors() -> Vec<Vec<u8>> {
    vec![
        MIT_SPNEGO_ACCEPT.to_vec(),
        ntlm_resp(),
        encode_neg_token_resp(
            Some(NegState::AcceptIncomplete),
            None,
            Some(&[0x33; 300]),
            Some(&[0x44; 16]),
        ),
    ]
}

/// A well-formed OID content encoding of 1..=12 octets.
fn valid_oid() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(oids::KERBEROS.to_vec()),
        Just(oids::MS_KERBEROS.to_vec()),
        Just(oids::NTLM.to_vec()),
        prop::collection::vec(any::<u8>(), 1..12).prop_map(|mut v| {
            let last = v.len() - 1;
            for (i, b) in v.iter_mut().enumerate() {
                if i == last {
                    *b &= 0x7f;
                } else {
                    *b |= 0x80;
                }
            }
            if v.first() == Some(&0x80) {
                v[0] = 0x81;
            }
            v
        }),
    ]
}

fn neg_state() -> impl Strategy<Value = Option<NegState>> {
    prop_oneof![
        Just(None),
        Just(Some(NegState::AcceptCompleted)),
        Just(Some(NegState::AcceptIncomplete)),
        Just(Some(NegState::Reject)),
        Just(Some(NegState::RequestMic)),
    ]
}

fn check_init_invariants(input: &[u8]) {
    if let Ok(InitialToken::Spnego(init)) = decode_initial_token(input) {
        assert!(!init.mech_types.is_empty());
        assert!(init.mech_types.len() <= MAX_MECH_TYPES);
        assert!(init.mech_types_der.len() <= input.len());
        for oid in &init.mech_types {
            assert!(!oid.to_dotted().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn authz_random_bytes_never_panic(v in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_authorization(&v);
    }

    #[test]
    fn authz_scheme_and_token_never_panic(
        scheme in prop_oneof![
            Just("Negotiate".to_owned()),
            Just("NTLM".to_owned()),
            Just("nEgOtIaTe".to_owned()),
            Just("Basic".to_owned()),
            "[!-~]{0,40}",
        ],
        sep in "[ \t]{0,3}",
        token in "[A-Za-z0-9+/=_\\-, \t\"]{0,200}",
    ) {
        let value = format!("{scheme}{sep}{token}");
        if let Ok(Credentials::Negotiate(t) | Credentials::Ntlm(t)) = parse_authorization(value.as_bytes()) {
            prop_assert!(!t.is_empty());
        }
    }

    #[test]
    fn challenge_roundtrip(token in prop::collection::vec(any::<u8>(), 1..3000), ntlm in any::<bool>()) {
        let scheme = if ntlm { ChallengeScheme::Ntlm } else { ChallengeScheme::Negotiate };
        let value = challenge_value(scheme, Some(&token));
        let expected = if ntlm { Credentials::Ntlm(token.clone()) } else { Credentials::Negotiate(token.clone()) };
        prop_assert_eq!(parse_authorization(value.as_bytes()), Ok(expected.clone()));
        // unpadded and surrounded by whitespace also accepted
        let unpadded = format!("  {} \t", value.trim_end_matches('='));
        prop_assert_eq!(parse_authorization(unpadded.as_bytes()), Ok(expected));
    }

    #[test]
    fn initial_random_bytes_never_panic(v in prop::collection::vec(any::<u8>(), 0..600)) {
        check_init_invariants(&v);
    }

    #[test]
    fn initial_framed_random_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
        // Valid framing and OID, random contents.
        let mut v = vec![0x60, 0x81, 0xff, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, 0xa0];
        v.extend_from_slice(&body);
        check_init_invariants(&v);
        let len = v.len() - 3;
        if let Some(b) = v.get_mut(2) { *b = u8::try_from(len).unwrap_or(0xff); }
        check_init_invariants(&v);
    }

    #[test]
    fn initial_mutated_never_panic(which in 0..4usize, muts in prop::collection::vec(mutation(), 1..5)) {
        let vectors = init_vectors();
        let base = &vectors[which % vectors.len()];
        check_init_invariants(&apply(base, &muts));
    }

    #[test]
    fn resp_random_bytes_never_panic(v in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_neg_token_resp(&v);
    }

    #[test]
    fn resp_mutated_never_panic(which in 0..3usize, muts in prop::collection::vec(mutation(), 1..5)) {
        let vectors = resp_vectors();
        let base = &vectors[which % vectors.len()];
        let _ = decode_neg_token_resp(&apply(base, &muts));
    }

    #[test]
    fn resp_roundtrip(
        state in neg_state(),
        mech in proptest::option::of(valid_oid()),
        token in proptest::option::of(prop::collection::vec(any::<u8>(), 0..2000)),
        mic in proptest::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    ) {
        let resp = NegTokenResp {
            neg_state: state,
            supported_mech: mech.as_deref().map(Oid),
            response_token: token.as_deref(),
            mech_list_mic: mic.as_deref(),
        };
        let der = resp.encode();
        prop_assert_eq!(decode_neg_token_resp(&der), Ok(resp));
    }

    #[test]
    fn resp_roundtrip_named_mech(state in neg_state(), which in 0..6usize, token in prop::collection::vec(any::<u8>(), 0..300)) {
        let mech = [Mech::Kerberos, Mech::MsKerberos, Mech::Kerberos5User2User, Mech::Ntlm, Mech::NegoEx, Mech::Spnego][which];
        let der = encode_neg_token_resp(state, Some(mech), Some(&token), None);
        let resp = decode_neg_token_resp(&der).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(resp.neg_state, state);
        prop_assert_eq!(resp.supported_mech.map(|o| o.mech()), Some(mech));
        prop_assert_eq!(resp.response_token, Some(&token[..]));
    }

    #[test]
    fn init_roundtrip(
        mechs in prop::collection::vec(valid_oid(), 1..=MAX_MECH_TYPES),
        flags in proptest::option::of(any::<u8>()),
        token in proptest::option::of(prop::collection::vec(any::<u8>(), 0..2000)),
        mic in proptest::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    ) {
        let oids: Vec<Oid<'_>> = mechs.iter().map(|m| Oid(m)).collect();
        let der = encode_initial_token(&oids, flags, token.as_deref(), mic.as_deref());
        match decode_initial_token(&der) {
            Ok(InitialToken::Spnego(init)) => {
                prop_assert_eq!(init.mech_types, oids);
                prop_assert_eq!(init.req_flags, flags);
                prop_assert_eq!(init.mech_token, token.as_deref());
                prop_assert_eq!(init.mech_list_mic, mic.as_deref());
            }
            other => prop_assert!(false, "decoded as {:?}", other),
        }
    }
}
