//! NTLM: MS-NLMP §4.2 test vectors, full handshakes, and the refusals and
//! tamperings the acceptor must catch.

use std::sync::Arc;
use std::time::Duration;

use iwa_proto::ntlm::av::av_flags;
use iwa_proto::ntlm::client::{self, ClientAuth, CURL_NEGOTIATE_FLAGS, WINDOWS_NEGOTIATE_FLAGS};
use iwa_proto::ntlm::crypto;
use iwa_proto::ntlm::messages::{MIC_END, MIC_OFFSET};
use iwa_proto::ntlm::{
    AuthenticateMessage, AvPair, AvPairs, ChallengeMessage, ChallengeSent, FileTime,
    NegotiateFlags, NegotiateMessage, NtlmError, NtlmMessage, NtlmV2Response, ServerConfig,
    ServerHandshake, Version,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex16(s: &str) -> [u8; 16] {
    hex(s).try_into().unwrap()
}

// ---- MS-NLMP §4.2.1 common values and §4.2.4 NTLMv2 ---------------------------

const USER: &str = "User";
const DOMAIN: &str = "Domain";
const PASSWORD: &str = "Password";
const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];
const RANDOM_SESSION_KEY: [u8; 16] = [0x55; 16];

/// §4.2.4.3: the CHALLENGE_MESSAGE.
const SPEC_CHALLENGE: &str =
    "4e544c4d53535000 02000000 0c000c00 38000000 33828ae2 0123456789abcdef 0000000000000000
    24002400 44000000 0600701700 00000f 530065007200760065007200
    02000c0044006f006d00610069006e00 01000c0053006500720076006500720000000000";

/// §4.2.4.3: the AUTHENTICATE_MESSAGE.
const SPEC_AUTHENTICATE: &str = "4e544c4d535350000300000018001800
    6c00000054005400840000000c000c00 48000000080008005400000010001000
    5c00000010001000d8000000358288e2 0501280a0000000f44006f006d006100
    69006e00550073006500720043004f00 4d005000550054004500520086c35097
    ac9cec102554764a57cccc19aaaaaaaa aaaaaaaa68cd0ab851e51c96aabc927b
    ebef6a1c010100000000000000000000 00000000aaaaaaaaaaaaaaaa00000000
    02000c0044006f006d00610069006e00 01000c00530065007200760065007200
    0000000000000000c5dad2544fc97990 94ce1ce90bc9d03e";

/// §4.2.4.1.3 / §4.2.4.2.2: `temp` (NTLMv2_CLIENT_CHALLENGE with time 0, the
/// AV pairs of the CHALLENGE, and the trailing Z(4)).
const SPEC_TEMP: &str = "0101 0000 00000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000
    02000c0044006f006d00610069006e00 01000c0053006500720076006500720000000000 00000000";

#[test]
fn spec_4_2_2_1_2_ntowfv1() {
    assert_eq!(
        crypto::nt_hash(PASSWORD),
        hex16("a4f49c406510bdcab6824ee7c30fd852")
    );
}

#[test]
fn spec_4_2_4_1_1_ntowfv2() {
    let key = crypto::nt_owf_v2(&crypto::nt_hash(PASSWORD), USER, DOMAIN);
    assert_eq!(key, hex16("0c868a403bfd7a93a3001ef22ef02e3f"));
    // The user name is upper-cased, the domain is not.
    assert_eq!(
        crypto::nt_owf_v2(&crypto::nt_hash(PASSWORD), "user", DOMAIN),
        key
    );
    assert_ne!(
        crypto::nt_owf_v2(&crypto::nt_hash(PASSWORD), USER, "DOMAIN"),
        key
    );
}

#[test]
fn spec_4_2_4_2_1_lmv2_response() {
    let key = crypto::nt_owf_v2(&crypto::nt_hash(PASSWORD), USER, DOMAIN);
    assert_eq!(
        crypto::lmv2_response(&key, &SERVER_CHALLENGE, &CLIENT_CHALLENGE).to_vec(),
        hex("86c35097ac9cec102554764a57cccc19 aaaaaaaaaaaaaaaa")
    );
}

#[test]
fn spec_4_2_4_2_2_ntlmv2_response_and_keys() {
    let key = crypto::nt_owf_v2(&crypto::nt_hash(PASSWORD), USER, DOMAIN);
    let av = AvPairs(vec![
        AvPair::NbDomainName(DOMAIN.into()),
        AvPair::NbComputerName("Server".into()),
    ])
    .encode()
    .unwrap();
    let temp = crypto::ntlmv2_temp(0, &CLIENT_CHALLENGE, &av);
    assert_eq!(temp, hex(SPEC_TEMP));
    let proof = crypto::nt_proof_str(&key, &SERVER_CHALLENGE, &temp);
    assert_eq!(proof, hex16("68cd0ab851e51c96aabc927bebef6a1c"));
    // §4.2.4.1.2 Session Base Key (= KeyExchangeKey for NTLMv2).
    let base = crypto::session_base_key(&key, &proof);
    assert_eq!(base, hex16("8de40ccadbc14a82f15cb0ad0de95ca3"));
    // §4.2.4.2.3 Encrypted Session Key: RC4(KeyExchangeKey, RandomSessionKey).
    let encrypted = crypto::rc4_16(&base, &RANDOM_SESSION_KEY);
    assert_eq!(encrypted, hex16("c5dad2544fc9799094ce1ce90bc9d03e"));
    assert_eq!(crypto::rc4_16(&base, &encrypted), RANDOM_SESSION_KEY);
}

#[test]
fn spec_4_2_4_3_challenge_message() {
    let bytes = hex(SPEC_CHALLENGE);
    let ch = ChallengeMessage::decode(&bytes).unwrap();
    assert_eq!(ch.flags, NegotiateFlags(0xe28a_8233));
    assert_eq!(ch.target_name, "Server");
    assert_eq!(ch.server_challenge, SERVER_CHALLENGE);
    assert_eq!(
        ch.version,
        Some(Version {
            major: 6,
            minor: 0,
            build: 6000,
            revision: 15
        })
    );
    assert_eq!(
        ch.target_info,
        Some(AvPairs(vec![
            AvPair::NbDomainName(DOMAIN.into()),
            AvPair::NbComputerName("Server".into())
        ]))
    );
    // The encoder reproduces the spec's bytes exactly.
    assert_eq!(ch.encode().unwrap(), bytes);
    assert!(matches!(
        NtlmMessage::decode(&bytes),
        Ok(NtlmMessage::Challenge(_))
    ));
}

#[test]
fn spec_4_2_4_3_authenticate_message_decode_and_encode() {
    let bytes = hex(SPEC_AUTHENTICATE);
    let m = AuthenticateMessage::decode(&bytes).unwrap();
    assert_eq!(m.flags, NegotiateFlags(0xe288_8235));
    assert_eq!(m.user, USER);
    assert_eq!(m.domain, DOMAIN);
    assert_eq!(m.workstation, "COMPUTER");
    assert_eq!(
        m.lm_response,
        hex("86c35097ac9cec102554764a57cccc19 aaaaaaaaaaaaaaaa")
    );
    let mut nt = hex("68cd0ab851e51c96aabc927bebef6a1c");
    nt.extend(hex(SPEC_TEMP));
    assert_eq!(m.nt_response, nt);
    assert_eq!(
        m.encrypted_random_session_key,
        hex("c5dad2544fc9799094ce1ce90bc9d03e")
    );
    assert_eq!(
        m.version,
        Some(Version {
            major: 5,
            minor: 1,
            build: 2600,
            revision: 15
        })
    );
    assert_eq!(m.mic, None);
    assert_eq!(m.encode().unwrap(), bytes);

    let v2 = NtlmV2Response::decode(&m.nt_response).unwrap();
    assert_eq!(v2.timestamp, FileTime(0));
    assert_eq!(v2.client_challenge, CLIENT_CHALLENGE);
    assert_eq!(v2.av_pairs.flags(), 0);
}

/// The spec's AUTHENTICATE, built from the pieces: every §4.2.4 value feeds
/// into these bytes.
#[test]
fn spec_4_2_4_3_authenticate_message_from_computed_values() {
    let key = crypto::nt_owf_v2(&crypto::nt_hash(PASSWORD), USER, DOMAIN);
    let temp = hex(SPEC_TEMP);
    let proof = crypto::nt_proof_str(&key, &SERVER_CHALLENGE, &temp);
    let mut nt_response = proof.to_vec();
    nt_response.extend(&temp);
    let base = crypto::session_base_key(&key, &proof);
    let msg = AuthenticateMessage {
        flags: NegotiateFlags(0xe288_8235),
        lm_response: crypto::lmv2_response(&key, &SERVER_CHALLENGE, &CLIENT_CHALLENGE).to_vec(),
        nt_response,
        domain: DOMAIN.into(),
        user: USER.into(),
        workstation: "COMPUTER".into(),
        encrypted_random_session_key: crypto::rc4_16(&base, &RANDOM_SESSION_KEY).to_vec(),
        version: Some(Version {
            major: 5,
            minor: 1,
            build: 2600,
            revision: 15,
        }),
        mic: None,
    };
    assert_eq!(msg.encode().unwrap(), hex(SPEC_AUTHENTICATE));
}

/// A server primed with the spec's CHALLENGE accepts the spec's
/// AUTHENTICATE and exports the spec's RandomSessionKey.
#[test]
fn spec_4_2_4_server_verifies_the_spec_authenticate() {
    let state = spec_state();
    let out = state
        .process_authenticate(&hex(SPEC_AUTHENTICATE), FileTime(0), |u, d| {
            assert_eq!((u, d), (USER, DOMAIN));
            Some(crypto::nt_hash(PASSWORD))
        })
        .unwrap();
    assert_eq!(out.user, USER);
    assert_eq!(out.domain, DOMAIN);
    assert_eq!(out.workstation, "COMPUTER");
    assert_eq!(out.session_key.as_bytes(), &RANDOM_SESSION_KEY);
    assert!(!out.mic_verified);
}

/// The spec's exchange has no NEGOTIATE; build a server state whose
/// CHALLENGE carries the spec's server challenge. The spec's AUTHENTICATE
/// carries time 0, so `now` = 0 in these tests.
fn spec_state() -> ChallengeSent {
    let config = Arc::new(ServerConfig::new("Domain", "Server"));
    let (state, _challenge) = ServerHandshake::new(config, SERVER_CHALLENGE, FileTime(0))
        .process_negotiate(&client::negotiate(WINDOWS_NEGOTIATE_FLAGS).unwrap())
        .unwrap();
    state
}

// ---- full handshakes ------------------------------------------------------------

const NOW: FileTime = FileTime(133_500_000_000_000_000);

fn config() -> Arc<ServerConfig> {
    let mut c = ServerConfig::new("EXAMPLE", "GATEWAY");
    c.dns_domain_name = Some("example.com".into());
    c.dns_computer_name = Some("gw.example.com".into());
    Arc::new(c)
}

struct Flow {
    state: ChallengeSent,
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
}

fn start(flags: NegotiateFlags) -> Flow {
    let negotiate = client::negotiate(flags).unwrap();
    let (state, challenge) = ServerHandshake::new(config(), [9, 8, 7, 6, 5, 4, 3, 2], NOW)
        .process_negotiate(&negotiate)
        .unwrap();
    Flow {
        state,
        negotiate,
        challenge,
    }
}

fn alice() -> ClientAuth {
    let mut c = ClientAuth::new("alice", "EXAMPLE", "correct horse");
    c.target_name = Some("HTTP/gw.example.com".into());
    c
}

fn lookup(user: &str, domain: &str) -> Option<[u8; 16]> {
    (user.eq_ignore_ascii_case("alice") && domain.eq_ignore_ascii_case("EXAMPLE"))
        .then(|| crypto::nt_hash("correct horse"))
}

fn windows_authenticate() -> (Flow, Vec<u8>) {
    let flow = start(WINDOWS_NEGOTIATE_FLAGS);
    let auth = alice()
        .authenticate(&flow.negotiate, &flow.challenge)
        .unwrap();
    (flow, auth)
}

#[test]
fn challenge_carries_the_configured_target_info() {
    let flow = start(WINDOWS_NEGOTIATE_FLAGS);
    let ch = ChallengeMessage::decode(&flow.challenge).unwrap();
    let f = ch.flags;
    for flag in [
        NegotiateFlags::UNICODE,
        NegotiateFlags::NTLM,
        NegotiateFlags::TARGET_INFO,
        NegotiateFlags::EXTENDED_SESSIONSECURITY,
        NegotiateFlags::KEY_EXCH,
        NegotiateFlags::VERSION,
        NegotiateFlags::TARGET_TYPE_DOMAIN,
    ] {
        assert!(f.contains(flag), "{f:?} lacks {flag:?}");
    }
    assert!(
        !f.contains(NegotiateFlags::LM_KEY),
        "LM_KEY must never be granted"
    );
    assert!(!f.contains(NegotiateFlags::OEM));
    assert_eq!(ch.target_name, "EXAMPLE");
    assert_eq!(ch.version, Some(Version::DEFAULT));
    let info = ch.target_info.unwrap();
    assert_eq!(
        info.0,
        vec![
            AvPair::NbDomainName("EXAMPLE".into()),
            AvPair::NbComputerName("GATEWAY".into()),
            AvPair::DnsDomainName("example.com".into()),
            AvPair::DnsComputerName("gw.example.com".into()),
            AvPair::Timestamp(NOW),
        ]
    );
    assert_eq!(flow.state.server_challenge(), [9, 8, 7, 6, 5, 4, 3, 2]);
}

#[test]
fn windows_style_handshake_with_mic_and_key_exchange() {
    let (flow, auth) = windows_authenticate();
    let m = AuthenticateMessage::decode(&auth).unwrap();
    assert!(m.mic.is_some());
    assert!(m.flags.contains(NegotiateFlags::KEY_EXCH));
    let out = flow.state.process_authenticate(&auth, NOW, lookup).unwrap();
    assert_eq!(out.user, "alice");
    assert_eq!(out.domain, "EXAMPLE");
    assert_eq!(out.workstation, "WORKSTATION");
    assert!(out.mic_verified);
    assert_eq!(out.session_key.as_bytes(), &[0x55; 16]);
    assert_eq!(out.target_name.as_deref(), Some("HTTP/gw.example.com"));
    assert_eq!(out.channel_bindings, None);
    assert_eq!(out.client_timestamp, NOW);
    assert_eq!(format!("{:?}", out.session_key), "SessionKey(..)");
}

#[test]
fn curl_style_handshake_oem_no_version_no_mic() {
    let negotiate = client::negotiate(CURL_NEGOTIATE_FLAGS).unwrap();
    assert_eq!(negotiate.len(), 32, "curl's NEGOTIATE is 32 bytes");
    let n = NegotiateMessage::decode(&negotiate).unwrap();
    assert_eq!(n.version, None);
    let (state, challenge) = ServerHandshake::new(config(), [1; 8], NOW)
        .process_negotiate(&negotiate)
        .unwrap();
    let ch = ChallengeMessage::decode(&challenge).unwrap();
    assert!(ch.flags.contains(NegotiateFlags::OEM));
    assert!(!ch.flags.contains(NegotiateFlags::UNICODE));
    assert!(!ch.flags.contains(NegotiateFlags::VERSION));
    assert!(ch.flags.contains(NegotiateFlags::TARGET_INFO));
    assert_eq!(
        challenge.get(12..14),
        Some(&[7u8, 0][..]),
        "OEM target name: 7 bytes"
    );

    let mut c = alice();
    c.mic = false;
    let auth = c.authenticate(&negotiate, &challenge).unwrap();
    let m = AuthenticateMessage::decode(&auth).unwrap();
    assert!(!m.flags.contains(NegotiateFlags::UNICODE));
    assert_eq!(m.version, None);
    assert_eq!(m.mic, None);
    // OEM strings on the wire: "alice" is 5 bytes.
    assert_eq!(auth.get(36..38), Some(&[5u8, 0][..]));
    let out = state.process_authenticate(&auth, NOW, lookup).unwrap();
    assert_eq!(out.user, "alice");
    assert!(!out.mic_verified);
}

#[test]
fn negotiate_shapes_of_real_clients() {
    // 16 bytes: flags only.
    let mut short = b"NTLMSSP\0\x01\0\0\0".to_vec();
    short.extend(0x0000_8207u32.to_le_bytes());
    assert_eq!(
        NegotiateMessage::decode(&short).unwrap().flags,
        NegotiateFlags(0x8207)
    );
    // Windows: 40 bytes with VERSION.
    let win = client::negotiate(WINDOWS_NEGOTIATE_FLAGS).unwrap();
    assert_eq!(win.len(), 40);
    assert_eq!(
        NegotiateMessage::decode(&win).unwrap().version,
        Some(Version::DEFAULT)
    );
    // With OEM domain and workstation supplied (pyspnego can send these).
    let m = NegotiateMessage {
        flags: NegotiateFlags(0xe208_b297)
            | NegotiateFlags::OEM_DOMAIN_SUPPLIED
            | NegotiateFlags::OEM_WORKSTATION_SUPPLIED,
        domain: b"EXAMPLE".to_vec(),
        workstation: b"WS01".to_vec(),
        version: Some(Version::DEFAULT),
    };
    let bytes = m.encode().unwrap();
    assert_eq!(NegotiateMessage::decode(&bytes).unwrap(), m);
    assert_eq!(
        NtlmMessage::decode(&bytes).unwrap(),
        NtlmMessage::Negotiate(m)
    );
}

#[test]
fn pass_through_validator_path() {
    let (flow, auth) = windows_authenticate();
    let received = flow.state.receive_authenticate(&auth, NOW).unwrap();
    assert_eq!(received.user(), "alice");
    assert_eq!(received.domain(), "EXAMPLE");
    assert_eq!(received.workstation(), "WORKSTATION");
    assert_eq!(received.lm_response(), &[0u8; 24]);
    assert!(received.nt_response().len() > 48);
    assert_eq!(received.server_challenge(), [9, 8, 7, 6, 5, 4, 3, 2]);
    assert!(received.mic_announced());
    // What the DC would return: the SessionBaseKey.
    let key = crypto::nt_owf_v2(&crypto::nt_hash("correct horse"), "alice", "EXAMPLE");
    let proof = crypto::nt_proof_str(
        &key,
        &received.server_challenge(),
        &received.ntlmv2_response().temp,
    );
    let base = crypto::session_base_key(&key, &proof);
    let out = received.complete_with_session_base_key(&base).unwrap();
    assert!(out.mic_verified);

    // A wrong session key from the DC makes the MIC fail.
    let (flow, auth) = windows_authenticate();
    let received = flow.state.receive_authenticate(&auth, NOW).unwrap();
    assert_eq!(
        received
            .complete_with_session_base_key(&[0; 16])
            .unwrap_err(),
        NtlmError::MicMismatch
    );
}

#[test]
fn channel_bindings_are_exposed_and_checked() {
    let cert_hash = [0x42u8; 32];
    let expected = crypto::tls_server_end_point_channel_bindings(&cert_hash);
    let flow = start(WINDOWS_NEGOTIATE_FLAGS);
    let mut c = alice();
    c.channel_bindings = Some(expected);
    let auth = c.authenticate(&flow.negotiate, &flow.challenge).unwrap();
    let out = flow.state.process_authenticate(&auth, NOW, lookup).unwrap();
    assert_eq!(out.channel_bindings, Some(expected));
    assert_eq!(out.check_channel_bindings(&expected), Ok(()));
    let other = crypto::tls_server_end_point_channel_bindings(&[0x43u8; 32]);
    assert_eq!(
        out.check_channel_bindings(&other),
        Err(NtlmError::ChannelBindingsMismatch)
    );

    let (flow, auth) = windows_authenticate();
    let out = flow.state.process_authenticate(&auth, NOW, lookup).unwrap();
    assert_eq!(
        out.check_channel_bindings(&expected),
        Err(NtlmError::ChannelBindingsAbsent)
    );
    assert_eq!(
        iwa_proto::ntlm::check_channel_bindings(Some(&[0; 16]), &expected),
        Err(NtlmError::ChannelBindingsAbsent)
    );
}

#[test]
fn channel_binding_hash_layout() {
    // MD5 over: initiator addrtype/len (0,0), acceptor addrtype/len (0,0),
    // application data length (LE u32) and bytes.
    let app = b"tls-server-end-point:abc";
    let mut manual = vec![0u8; 16];
    manual.extend((app.len() as u32).to_le_bytes());
    manual.extend(app);
    use md5::Digest;
    let want: [u8; 16] = md5::Md5::digest(&manual).into();
    assert_eq!(crypto::tls_server_end_point_channel_bindings(b"abc"), want);
    assert_eq!(crypto::gss_channel_bindings_hash(0, &[], 0, &[], app), want);
}

// ---- refusals and tamperings --------------------------------------------------

fn nt_offset(auth: &[u8]) -> usize {
    u32::from_le_bytes(auth[24..28].try_into().unwrap()) as usize
}

/// Verifies `auth` against a fresh copy of the Windows-style flow.
fn verify(auth: &[u8]) -> Result<(), NtlmError> {
    let flow = start(WINDOWS_NEGOTIATE_FLAGS);
    flow.state
        .process_authenticate(auth, NOW, lookup)
        .map(|_| ())
}

#[test]
fn valid_message_verifies_in_a_fresh_flow() {
    // The flows are deterministic, so a message built for one verifies in another.
    let (_, auth) = windows_authenticate();
    assert_eq!(verify(&auth), Ok(()));
}

#[test]
fn wrong_password_is_refused() {
    let flow = start(WINDOWS_NEGOTIATE_FLAGS);
    let mut c = alice();
    c.nt_hash = crypto::nt_hash("wrong");
    let auth = c.authenticate(&flow.negotiate, &flow.challenge).unwrap();
    assert_eq!(verify(&auth), Err(NtlmError::NtProofMismatch));
}

#[test]
fn unknown_user_is_refused() {
    let flow = start(WINDOWS_NEGOTIATE_FLAGS);
    let mut c = alice();
    c.user = "mallory".into();
    let auth = c.authenticate(&flow.negotiate, &flow.challenge).unwrap();
    assert_eq!(verify(&auth), Err(NtlmError::UnknownUser));
}

#[test]
fn flipped_bit_in_nt_proof_str_is_refused() {
    let (_, auth) = windows_authenticate();
    let at = nt_offset(&auth);
    for bit in [0, 7, 64, 127] {
        let mut t = auth.clone();
        t[at + bit / 8] ^= 1 << (bit % 8);
        assert_eq!(verify(&t), Err(NtlmError::NtProofMismatch), "bit {bit}");
    }
}

#[test]
fn flipped_bit_in_blob_is_refused() {
    let (_, auth) = windows_authenticate();
    let at = nt_offset(&auth);
    let nt_len = AuthenticateMessage::decode(&auth)
        .unwrap()
        .nt_response
        .len();
    // Reserved, timestamp, client challenge, an AV pair value, trailing padding.
    for offset in [16 + 4, 16 + 8, 16 + 16, 16 + 28 + 4, nt_len - 1] {
        let mut t = auth.clone();
        t[at + offset] ^= 0x01;
        assert_eq!(
            verify(&t),
            Err(NtlmError::NtProofMismatch),
            "blob offset {offset}"
        );
    }
}

#[test]
fn flipped_bit_in_mic_is_refused() {
    let (_, auth) = windows_authenticate();
    for at in [MIC_OFFSET, MIC_END - 1] {
        let mut t = auth.clone();
        t[at] ^= 0x80;
        assert_eq!(verify(&t), Err(NtlmError::MicMismatch));
    }
}

#[test]
fn flipped_bit_in_encrypted_session_key_breaks_the_mic() {
    let (_, auth) = windows_authenticate();
    let mut t = auth.clone();
    let last = t.len() - 1; // the key is the last payload field
    t[last] ^= 0x01;
    assert_eq!(verify(&t), Err(NtlmError::MicMismatch));
}

#[test]
fn changed_header_or_name_breaks_the_mic() {
    // Fields outside the NT response are covered by the MIC only.
    let (_, auth) = windows_authenticate();
    let m = AuthenticateMessage::decode(&auth).unwrap();
    let mut t = auth.clone();
    let ws = u32::from_le_bytes(auth[48..52].try_into().unwrap()) as usize;
    t[ws] ^= 0x01; // "WORKSTATION" → "VORKSTATION"
    assert_eq!(verify(&t), Err(NtlmError::MicMismatch));
    let mut t = auth.clone();
    t[60..64].copy_from_slice(&(m.flags.bits() ^ NegotiateFlags::SIGN.bits()).to_le_bytes());
    assert_eq!(verify(&t), Err(NtlmError::MicMismatch));
}

#[test]
fn swapped_server_challenge_is_refused() {
    let (flow, auth) = windows_authenticate();
    drop(flow);
    let negotiate = client::negotiate(WINDOWS_NEGOTIATE_FLAGS).unwrap();
    let (other, _) = ServerHandshake::new(config(), [0xfe; 8], NOW)
        .process_negotiate(&negotiate)
        .unwrap();
    assert_eq!(
        other.process_authenticate(&auth, NOW, lookup).unwrap_err(),
        NtlmError::NtProofMismatch
    );
}

#[test]
fn cleared_mic_flag_with_mic_present_is_refused() {
    // Clearing MsvAvFlags' MIC bit (the "drop the MIC" attack) changes the
    // blob, which NTProofStr covers: the proof fails.
    let (_, auth) = windows_authenticate();
    let at = nt_offset(&auth);
    let m = AuthenticateMessage::decode(&auth).unwrap();
    let v2 = NtlmV2Response::decode(&m.nt_response).unwrap();
    assert_eq!(
        v2.av_pairs.flags() & av_flags::MIC_PRESENT,
        av_flags::MIC_PRESENT
    );
    // Find MsvAvFlags (id 6, len 4) in the blob and clear bit 1.
    let nt = &auth[at..at + m.nt_response.len()];
    let pos = nt
        .windows(4)
        .position(|w| w == [6, 0, 4, 0])
        .expect("MsvAvFlags present");
    let mut t = auth.clone();
    t[at + pos + 4] &= !0x02;
    let tm = AuthenticateMessage::decode(&t).unwrap();
    assert_eq!(
        NtlmV2Response::decode(&tm.nt_response)
            .unwrap()
            .av_pairs
            .flags()
            & av_flags::MIC_PRESENT,
        0
    );
    assert_eq!(verify(&t), Err(NtlmError::NtProofMismatch));
    // And zeroing the MIC too does not help.
    t[MIC_OFFSET..MIC_END].fill(0);
    assert_eq!(verify(&t), Err(NtlmError::NtProofMismatch));
}

#[test]
fn mic_announced_but_absent_is_refused() {
    // A client announcing a MIC in a message with no room for one.
    let flow = start(WINDOWS_NEGOTIATE_FLAGS);
    let auth = alice()
        .authenticate(&flow.negotiate, &flow.challenge)
        .unwrap();
    let mut m = AuthenticateMessage::decode(&auth).unwrap();
    m.mic = None;
    m.version = None;
    let short = m.encode().unwrap();
    assert_eq!(
        flow.state.receive_authenticate(&short, NOW).unwrap_err(),
        NtlmError::MicAbsent
    );
}

#[test]
fn mic_required_by_config() {
    let mut cfg = (*config()).clone();
    cfg.require_mic = true;
    let negotiate = client::negotiate(WINDOWS_NEGOTIATE_FLAGS).unwrap();
    let (state, challenge) = ServerHandshake::new(Arc::new(cfg.clone()), [3; 8], NOW)
        .process_negotiate(&negotiate)
        .unwrap();
    let mut c = alice();
    c.mic = false;
    let auth = c.authenticate(&negotiate, &challenge).unwrap();
    assert_eq!(
        state.receive_authenticate(&auth, NOW).unwrap_err(),
        NtlmError::MicRequired
    );
    let (state, challenge) = ServerHandshake::new(Arc::new(cfg), [3; 8], NOW)
        .process_negotiate(&negotiate)
        .unwrap();
    let auth = alice().authenticate(&negotiate, &challenge).unwrap();
    assert!(
        state
            .process_authenticate(&auth, NOW, lookup)
            .unwrap()
            .mic_verified
    );
}

#[test]
fn mic_covers_the_negotiate_message() {
    // The server saw a different NEGOTIATE than the one the client MACed.
    let flow = start(WINDOWS_NEGOTIATE_FLAGS);
    let other_negotiate =
        client::negotiate(WINDOWS_NEGOTIATE_FLAGS | NegotiateFlags::SEAL).unwrap();
    let auth = alice()
        .authenticate(&other_negotiate, &flow.challenge)
        .unwrap();
    assert_eq!(
        flow.state
            .process_authenticate(&auth, NOW, lookup)
            .unwrap_err(),
        NtlmError::MicMismatch
    );
}

#[test]
fn timestamp_out_of_skew_is_refused() {
    let (_, auth) = windows_authenticate();
    let skew = Duration::from_secs(300);
    let ticks = (skew.as_nanos() / 100) as u64;
    for now in [FileTime(NOW.0 + ticks), FileTime(NOW.0 - ticks)] {
        let flow = start(WINDOWS_NEGOTIATE_FLAGS);
        assert!(flow.state.process_authenticate(&auth, now, lookup).is_ok());
    }
    for now in [
        FileTime(NOW.0 + ticks + 1),
        FileTime(NOW.0 - ticks - 1),
        FileTime(0),
        FileTime(u64::MAX),
    ] {
        let flow = start(WINDOWS_NEGOTIATE_FLAGS);
        assert!(
            matches!(
                flow.state.process_authenticate(&auth, now, lookup),
                Err(NtlmError::TimestampOutOfSkew {
                    max_skew_secs: 300,
                    ..
                })
            ),
            "now = {now:?}"
        );
    }
}

#[test]
fn truncated_blob_at_every_offset_never_panics_and_never_verifies() {
    let (_, auth) = windows_authenticate();
    let m = AuthenticateMessage::decode(&auth).unwrap();
    for len in 0..m.nt_response.len() {
        let mut t = m.clone();
        t.nt_response.truncate(len);
        let bytes = t.encode().unwrap();
        let result = verify(&bytes);
        assert!(result.is_err(), "truncated to {len}");
        if len > 24 && len < 48 {
            assert!(
                matches!(result, Err(NtlmError::BlobTruncated { .. })),
                "{len}: {result:?}"
            );
        }
    }
    // And truncating the whole message at every offset.
    for len in 0..auth.len() {
        assert!(verify(&auth[..len]).is_err(), "message truncated to {len}");
    }
}

#[test]
fn ntlmv1_is_refused() {
    let (_, auth) = windows_authenticate();
    let mut m = AuthenticateMessage::decode(&auth).unwrap();
    m.nt_response = vec![0x11; 24];
    m.lm_response = vec![0x22; 24];
    m.flags = NegotiateFlags(m.flags.bits() & !NegotiateFlags::EXTENDED_SESSIONSECURITY.bits());
    assert_eq!(verify(&m.encode().unwrap()), Err(NtlmError::NtlmV1Refused));
}

#[test]
fn ntlm2_session_response_is_refused() {
    let (_, auth) = windows_authenticate();
    let mut m = AuthenticateMessage::decode(&auth).unwrap();
    m.nt_response = vec![0x11; 24];
    let mut lm = vec![0xaa; 8];
    lm.extend([0; 16]);
    m.lm_response = lm;
    assert!(m.flags.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY));
    assert_eq!(
        verify(&m.encode().unwrap()),
        Err(NtlmError::Ntlm2SessionResponseRefused)
    );
}

#[test]
fn lm_only_is_refused() {
    let (_, auth) = windows_authenticate();
    let mut m = AuthenticateMessage::decode(&auth).unwrap();
    m.nt_response = Vec::new();
    m.lm_response = vec![0x22; 24];
    assert_eq!(verify(&m.encode().unwrap()), Err(NtlmError::LmRefused));
}

#[test]
fn anonymous_is_refused() {
    let (_, auth) = windows_authenticate();
    let mut m = AuthenticateMessage::decode(&auth).unwrap();
    m.user = String::new();
    m.nt_response = Vec::new();
    for lm in [vec![], vec![0]] {
        m.lm_response = lm;
        assert_eq!(
            verify(&m.encode().unwrap()),
            Err(NtlmError::AnonymousRefused)
        );
    }
    // The anonymous flag alone.
    let mut m = AuthenticateMessage::decode(&auth).unwrap();
    m.flags |= NegotiateFlags::ANONYMOUS;
    assert_eq!(
        verify(&m.encode().unwrap()),
        Err(NtlmError::AnonymousRefused)
    );
    // An empty user name with a real-looking response.
    let mut m = AuthenticateMessage::decode(&auth).unwrap();
    m.user = String::new();
    assert_eq!(verify(&m.encode().unwrap()), Err(NtlmError::EmptyUserName));
}

#[test]
fn bad_resp_type_is_refused() {
    let (_, auth) = windows_authenticate();
    let at = nt_offset(&auth);
    let mut t = auth.clone();
    t[at + 16] = 2;
    assert_eq!(
        verify(&t),
        Err(NtlmError::UnsupportedRespType {
            resp_type: 2,
            hi_resp_type: 1
        })
    );
}

#[test]
fn key_exchange_without_a_16_byte_key_is_refused() {
    let (_, auth) = windows_authenticate();
    let mut m = AuthenticateMessage::decode(&auth).unwrap();
    m.encrypted_random_session_key.truncate(8);
    assert_eq!(
        verify(&m.encode().unwrap()),
        Err(NtlmError::BadEncryptedSessionKey { len: 8 })
    );
}

#[test]
fn a_state_cannot_be_reused() {
    // ChallengeSent::process_authenticate takes `self`: this would not compile:
    //   let s = start(..).state; s.process_authenticate(..); s.process_authenticate(..);
    // What we can test: a second handshake has its own challenge.
    let a = start(WINDOWS_NEGOTIATE_FLAGS);
    assert_eq!(a.state.challenge_message(), a.challenge.as_slice());
}

// ---- decoder structure errors -------------------------------------------------

#[test]
fn message_framing_errors() {
    assert_eq!(NtlmMessage::decode(&[]), Err(NtlmError::Empty));
    assert_eq!(
        NtlmMessage::decode(b"NTLMSSX\0\x01\0\0\0"),
        Err(NtlmError::BadSignature)
    );
    assert!(matches!(
        NtlmMessage::decode(b"NTLM"),
        Err(NtlmError::Truncated { .. })
    ));
    assert_eq!(
        NtlmMessage::decode(b"NTLMSSP\0\x04\0\0\0"),
        Err(NtlmError::UnknownMessageType { found: 4 })
    );
    assert_eq!(
        AuthenticateMessage::decode(&client::negotiate(CURL_NEGOTIATE_FLAGS).unwrap()),
        Err(NtlmError::UnexpectedMessageType {
            expected: "AUTHENTICATE",
            found: 1
        })
    );
    let big = vec![0u8; iwa_proto::ntlm::MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        NtlmMessage::decode(&big),
        Err(NtlmError::TooLong { .. })
    ));
}

#[test]
fn payload_field_errors() {
    let auth = hex(SPEC_AUTHENTICATE);
    // NT response offset pointing into the header.
    let mut t = auth.clone();
    t[24..28].copy_from_slice(&40u32.to_le_bytes());
    assert!(matches!(
        AuthenticateMessage::decode(&t),
        Err(NtlmError::FieldOverlapsHeader {
            field: "NtChallengeResponse",
            ..
        })
    ));
    // NT response past the end.
    let mut t = auth.clone();
    t[24..28].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert!(matches!(
        AuthenticateMessage::decode(&t),
        Err(NtlmError::FieldOutOfBounds {
            field: "NtChallengeResponse",
            ..
        })
    ));
    // User name overlapping the domain.
    let mut t = auth.clone();
    t[40..44].copy_from_slice(&0x4cu32.to_le_bytes());
    assert!(matches!(
        AuthenticateMessage::decode(&t),
        Err(NtlmError::FieldsOverlap { .. })
    ));
    // Odd-length Unicode user name.
    let mut t = auth.clone();
    t[36..38].copy_from_slice(&7u16.to_le_bytes());
    assert!(matches!(
        AuthenticateMessage::decode(&t),
        Err(NtlmError::OddUnicodeLength { .. })
    ));
}

#[test]
fn av_pair_list_errors() {
    let good = AvPairs(vec![AvPair::Flags(2), AvPair::Timestamp(NOW)])
        .encode()
        .unwrap();
    assert_eq!(AvPairs::decode(&good).unwrap().1, good.len());
    assert_eq!(
        AvPairs::decode(&good[..good.len() - 4]),
        Err(NtlmError::AvListUnterminated)
    );
    assert!(matches!(
        AvPairs::decode(&good[..good.len() - 2]),
        Err(NtlmError::Truncated { .. })
    ));
    let dup = AvPairs(vec![AvPair::Flags(2), AvPair::Flags(0)])
        .encode()
        .unwrap();
    assert_eq!(
        AvPairs::decode(&dup),
        Err(NtlmError::DuplicateAvPair { id: 6 })
    );
    let bad_len = [6u8, 0, 3, 0, 1, 2, 3, 0, 0, 0, 0];
    assert_eq!(
        AvPairs::decode(&bad_len),
        Err(NtlmError::AvPairBadLength {
            id: 6,
            len: 3,
            expected: 4
        })
    );
    let many: Vec<AvPair> = (0..=iwa_proto::ntlm::MAX_AV_PAIRS as u16)
        .map(|i| AvPair::Other {
            id: 100 + i,
            value: vec![],
        })
        .collect();
    assert!(matches!(
        AvPairs::decode(&AvPairs(many).encode().unwrap()),
        Err(NtlmError::TooManyAvPairs { .. })
    ));
    // Trailing bytes after EOL are left to the caller.
    let mut padded = good.clone();
    padded.extend([0, 0, 0, 0]);
    assert_eq!(AvPairs::decode(&padded).unwrap().1, good.len());
    // All the typed pairs round-trip.
    let all = AvPairs(vec![
        AvPair::NbComputerName("A".into()),
        AvPair::NbDomainName("B".into()),
        AvPair::DnsComputerName("c.d".into()),
        AvPair::DnsDomainName("d".into()),
        AvPair::DnsTreeName("t".into()),
        AvPair::Flags(7),
        AvPair::Timestamp(NOW),
        AvPair::SingleHost(vec![0; 48]),
        AvPair::TargetName("HTTP/x".into()),
        AvPair::ChannelBindings([9; 16]),
        AvPair::Other {
            id: 0x55,
            value: vec![1, 2],
        },
    ]);
    assert_eq!(AvPairs::decode(&all.encode().unwrap()).unwrap().0, all);
    assert_eq!(all.single_host(), Some(&[0u8; 48][..]));
}

#[test]
fn filetime_conversion() {
    assert_eq!(FileTime::from_unix(Duration::ZERO), FileTime::UNIX_EPOCH);
    // 2003-06-17T10:00:00Z, the davenport example: 0x01c334b736d39000.
    assert_eq!(
        FileTime::from_unix(Duration::from_secs(1_055_844_000)),
        FileTime(0x01c3_34b7_36d3_9000)
    );
}

// ---- real clients -------------------------------------------------------------
//
// Captured against this acceptor (ServerConfig EXAMPLE / GATEWAY, DNS names
// example.com / gw.example.com, server challenge 07×8), user alice, password
// Secret123: curl 7.88.1 `--ntlm -u 'EXAMPLE\alice:Secret123'` and pyspnego
// 0.11 `spnego.client("alice", "Secret123", hostname="gw.example.com",
// protocol="ntlm")`.

const CURL_NEGOTIATE: &str = "4e544c4d53535000010000000682080000000000000000000000000000000000";
const CURL_NOW: FileTime = FileTime(134_406_649_619_212_958);
const CURL_CHALLENGE: &str = "4e544c4d5353500002000000070007003000000006828900070707070707070700000000000000006e006e00370000004558414d504c4502000e004500580041004d0050004c00450001000e004700410054004500570041005900040016006500780061006d0070006c0065002e0063006f006d0003001c00670077002e006500780061006d0070006c0065002e0063006f006d00070008009eea00be2282dd0100000000";
const CURL_AUTHENTICATE: &str = "4e544c4d535350000300000018001800400000009e009e005800000007000700f600000005000500fd0000000b000b0002010000000000000000000006828900776bff63e69db1402a42a89bff3ef61cabb7fdaa7f6b72749368925a080bed2dac02b8fb549f173c0101000000000000805674bd2282dd01abb7fdaa7f6b72740000000002000e004500580041004d0050004c00450001000e004700410054004500570041005900040016006500780061006d0070006c0065002e0063006f006d0003001c00670077002e006500780061006d0070006c0065002e0063006f006d00070008009eea00be2282dd0100000000000000004558414d504c45616c696365574f524b53544154494f4e";

const PYSPNEGO_NEGOTIATE: &str =
    "4e544c4d5353500001000000378208e200000000280000000000000028000000000c04000000000f";
const PYSPNEGO_NOW: FileTime = FileTime(134_406_649_650_810_836);
const PYSPNEGO_CHALLENGE: &str = "4e544c4d53535000020000000e000e0038000000358289e2070707070707070700000000000000006e006e00460000000a007c4f0000000f4500580041004d0050004c00450002000e004500580041004d0050004c00450001000e004700410054004500570041005900040016006500780061006d0070006c0065002e0063006f006d0003001c00670077002e006500780061006d0070006c0065002e0063006f006d0007000800d40fe3bf2282dd0100000000";
const PYSPNEGO_AUTHENTICATE: &str = "4e544c4d53535000030000001800180058000000d000d0007000000000000000400100000a000a0040010000040004004a010000100010004e010000358289e2000c04000000000fc9d174bd495a90620aa391881b9ba10800000000000000000000000000000000000000000000000082e03e415476f339c1bed402629b13050101000000000000d40fe3bf2282dd015bd9f7e5d87f25900000000002000e004500580041004d0050004c00450001000e004700410054004500570041005900040016006500780061006d0070006c0065002e0063006f006d0003001c00670077002e006500780061006d0070006c0065002e0063006f006d0007000800d40fe3bf2282dd010900260048005400540050002f00670077002e006500780061006d0070006c0065002e0063006f006d000600040002000000000000000000000061006c0069006300650056004d008f5dd57ef05ef3c4374f8ece0c14d12f";

/// Windows SSPI's NEGOTIATE inside SPNEGO (flags 0xe2088297, VERSION
/// 10.0.17763), as in the SPNEGO tests.
const WINDOWS_NEGOTIATE: &str =
    "4e544c4d53535000010000009782 08e2 0000000000000000 0000000000000000 0a00634500 00000f";

fn capture_config() -> Arc<ServerConfig> {
    let mut c = ServerConfig::new("EXAMPLE", "GATEWAY");
    c.dns_domain_name = Some("example.com".into());
    c.dns_computer_name = Some("gw.example.com".into());
    Arc::new(c)
}

fn replay(negotiate: &str, challenge: &str, now: FileTime) -> ChallengeSent {
    let (state, ch) = ServerHandshake::new(capture_config(), [7; 8], now)
        .process_negotiate(&hex(negotiate))
        .unwrap();
    assert_eq!(ch, hex(challenge), "the acceptor is deterministic");
    state
}

fn secret123(user: &str, _domain: &str) -> Option<[u8; 16]> {
    (user == "alice").then(|| crypto::nt_hash("Secret123"))
}

#[test]
fn real_curl_handshake() {
    let n = NegotiateMessage::decode(&hex(CURL_NEGOTIATE)).unwrap();
    assert_eq!(n.flags, NegotiateFlags(0x0008_8206));
    assert_eq!(n.version, None);
    let auth = hex(CURL_AUTHENTICATE);
    let m = AuthenticateMessage::decode(&auth).unwrap();
    assert_eq!(
        (m.user.as_str(), m.domain.as_str(), m.workstation.as_str()),
        ("alice", "EXAMPLE", "WORKSTATION")
    );
    assert!(
        !m.flags.contains(NegotiateFlags::UNICODE),
        "curl answers in OEM"
    );
    assert_eq!(m.mic, None);
    let out = replay(CURL_NEGOTIATE, CURL_CHALLENGE, CURL_NOW)
        .process_authenticate(&auth, CURL_NOW, secret123)
        .unwrap();
    assert_eq!(out.user, "alice");
    assert!(!out.mic_verified);
    // Wrong password.
    let wrong = replay(CURL_NEGOTIATE, CURL_CHALLENGE, CURL_NOW).process_authenticate(
        &auth,
        CURL_NOW,
        |_, _| Some(crypto::nt_hash("Secret124")),
    );
    assert_eq!(wrong.unwrap_err(), NtlmError::NtProofMismatch);
}

#[test]
fn real_pyspnego_handshake() {
    let n = NegotiateMessage::decode(&hex(PYSPNEGO_NEGOTIATE)).unwrap();
    assert!(n.version.is_some());
    let auth = hex(PYSPNEGO_AUTHENTICATE);
    let m = AuthenticateMessage::decode(&auth).unwrap();
    assert_eq!((m.user.as_str(), m.domain.as_str()), ("alice", ""));
    assert!(m.mic.is_some());
    let out = replay(PYSPNEGO_NEGOTIATE, PYSPNEGO_CHALLENGE, PYSPNEGO_NOW)
        .process_authenticate(&auth, PYSPNEGO_NOW, secret123)
        .unwrap();
    assert!(out.mic_verified);
    assert!(out.flags.contains(NegotiateFlags::KEY_EXCH));
    assert_eq!(out.target_name.as_deref(), Some("HTTP/gw.example.com"));
    // Tampered MIC.
    let mut t = auth.clone();
    t[MIC_OFFSET + 3] ^= 1;
    let r = replay(PYSPNEGO_NEGOTIATE, PYSPNEGO_CHALLENGE, PYSPNEGO_NOW).process_authenticate(
        &t,
        PYSPNEGO_NOW,
        secret123,
    );
    assert_eq!(r.unwrap_err(), NtlmError::MicMismatch);
    // Replayed against another server challenge.
    let (other, _) = ServerHandshake::new(capture_config(), [8; 8], PYSPNEGO_NOW)
        .process_negotiate(&hex(PYSPNEGO_NEGOTIATE))
        .unwrap();
    assert_eq!(
        other
            .process_authenticate(&auth, PYSPNEGO_NOW, secret123)
            .unwrap_err(),
        NtlmError::NtProofMismatch
    );
}

#[test]
fn real_windows_negotiate() {
    let n = NegotiateMessage::decode(&hex(WINDOWS_NEGOTIATE)).unwrap();
    assert_eq!(n.flags, WINDOWS_NEGOTIATE_FLAGS);
    assert_eq!(
        n.version,
        Some(Version {
            major: 10,
            minor: 0,
            build: 17763,
            revision: 15
        })
    );
}
