//! NTLM property tests: no input makes a decoder or the acceptor panic,
//! decoded messages re-encode to the same value, and no change to a valid
//! AUTHENTICATE (with a MIC) verifies.

use std::sync::Arc;

use iwa_proto::ntlm::client::{self, ClientAuth, CURL_NEGOTIATE_FLAGS, WINDOWS_NEGOTIATE_FLAGS};
use iwa_proto::ntlm::crypto;
use iwa_proto::ntlm::{
    AuthenticateMessage, AvPairs, ChallengeMessage, ChallengeSent, FileTime, NegotiateMessage,
    NtlmMessage, NtlmV2Response, ServerConfig, ServerHandshake,
};
use proptest::prelude::*;

const NOW: FileTime = FileTime(133_500_000_000_000_000);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        ..ProptestConfig::default()
    }
}

fn server() -> Arc<ServerConfig> {
    Arc::new(ServerConfig::new("EXAMPLE", "GATEWAY"))
}

fn flow(flags: iwa_proto::ntlm::NegotiateFlags) -> (ChallengeSent, Vec<u8>, Vec<u8>) {
    let negotiate = client::negotiate(flags).unwrap();
    let (state, challenge) = ServerHandshake::new(server(), [7; 8], NOW)
        .process_negotiate(&negotiate)
        .unwrap();
    (state, negotiate, challenge)
}

fn lookup(user: &str, _domain: &str) -> Option<[u8; 16]> {
    (user == "alice").then(|| crypto::nt_hash("pw"))
}

/// Valid messages of every kind, as mutation seeds.
fn seeds() -> Vec<Vec<u8>> {
    let (_, negotiate, challenge) = flow(WINDOWS_NEGOTIATE_FLAGS);
    let windows = ClientAuth::new("alice", "EXAMPLE", "pw")
        .authenticate(&negotiate, &challenge)
        .unwrap();
    let (_, curl_negotiate, curl_challenge) = flow(CURL_NEGOTIATE_FLAGS);
    let mut c = ClientAuth::new("alice", "", "pw");
    c.mic = false;
    let curl = c.authenticate(&curl_negotiate, &curl_challenge).unwrap();
    vec![
        negotiate,
        challenge,
        windows,
        curl_negotiate,
        curl_challenge,
        curl,
    ]
}

fn windows_auth() -> Vec<u8> {
    let (_, negotiate, challenge) = flow(WINDOWS_NEGOTIATE_FLAGS);
    ClientAuth::new("alice", "EXAMPLE", "pw")
        .authenticate(&negotiate, &challenge)
        .unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Set { at: usize, value: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Truncate { at: usize },
    SetU16 { at: usize, value: u16 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u16),
                Just(1),
                Just(0x7fff),
                Just(0xffff),
                any::<u16>()
            ]
        )
            .prop_map(|(at, value)| Mutation::SetU16 { at, value }),
    ]
}

fn apply(input: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = input.to_vec();
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
        Mutation::SetU16 { at, value } => {
            let at = at % n;
            if at + 2 <= v.len() {
                v[at..at + 2].copy_from_slice(&value.to_le_bytes());
            }
        }
    }
    v
}

/// Every decoder and the acceptor over `input`; checks round trips.
fn exercise(input: &[u8]) {
    if let Ok(m) = NtlmMessage::decode(input) {
        let again = NtlmMessage::decode(&m.encode().expect("a decoded message re-encodes"));
        assert_eq!(again.as_ref(), Ok(&m));
    }
    let _ = NegotiateMessage::decode(input);
    let _ = ChallengeMessage::decode(input);
    if let Ok(a) = AuthenticateMessage::decode(input) {
        let _ = NtlmV2Response::decode(&a.nt_response);
    }
    let _ = AvPairs::decode(input);
    let _ = NtlmV2Response::decode(input);
    let (state, _, _) = flow(WINDOWS_NEGOTIATE_FLAGS);
    let _ = state.process_authenticate(input, NOW, lookup);
    let _ = ServerHandshake::new(server(), [1; 8], NOW).process_negotiate(input);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&input);
    }

    #[test]
    fn random_bodies_after_a_valid_header_never_panic(
        kind in 1u32..=3,
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut input = b"NTLMSSP\0".to_vec();
        input.extend(kind.to_le_bytes());
        input.extend(body);
        exercise(&input);
    }

    #[test]
    fn mutated_messages_never_panic(
        seed in 0usize..6,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds();
        let mut input = seeds[seed % seeds.len()].clone();
        for m in &mutations {
            input = apply(&input, m);
        }
        exercise(&input);
    }

    #[test]
    fn any_change_to_an_authenticate_with_mic_fails(
        mutations in prop::collection::vec(mutation(), 1..3),
    ) {
        let valid = windows_auth();
        let mut input = valid.clone();
        for m in &mutations {
            input = apply(&input, m);
        }
        let (state, _, _) = flow(WINDOWS_NEGOTIATE_FLAGS);
        let result = state.process_authenticate(&input, NOW, lookup);
        if input == valid {
            prop_assert!(result.is_ok());
        } else {
            prop_assert!(result.is_err(), "mutated AUTHENTICATE verified: {:?}", mutations);
        }
    }

    #[test]
    fn authenticate_round_trips(
        user in "[a-zA-Z0-9é]{0,12}",
        domain in "[A-Z]{0,8}",
        workstation in "[A-Z0-9]{0,8}",
        lm in prop::collection::vec(any::<u8>(), 0..30),
        nt in prop::collection::vec(any::<u8>(), 0..80),
        key in prop::collection::vec(any::<u8>(), 0..17),
        flags in any::<u32>(),
        mic in proptest::option::of(any::<[u8; 16]>()),
    ) {
        let flags = iwa_proto::ntlm::NegotiateFlags(flags | 1); // Unicode: é needs it
        let version = flags.contains(iwa_proto::ntlm::NegotiateFlags::VERSION)
            .then_some(iwa_proto::ntlm::Version::DEFAULT);
        let m = AuthenticateMessage {
            flags,
            lm_response: lm,
            nt_response: nt,
            domain,
            user,
            workstation,
            encrypted_random_session_key: key,
            version,
            mic,
        };
        let bytes = m.encode().unwrap();
        prop_assert_eq!(AuthenticateMessage::decode(&bytes), Ok(m));
    }
}
