#![no_main]
//! Arbitrary bytes as the AUTHENTICATE of a handshake primed with pyspnego's
//! captured NEGOTIATE, server challenge 07×8 and the capture's time, with a
//! fixed hash lookup (alice / Secret123), so the seeds (the captured curl and
//! pyspnego AUTHENTICATEs) verify and mutations reach the NTProofStr and MIC
//! checks. Each run goes through both the local and the pass-through path.

use std::sync::{Arc, OnceLock};

use iwa_proto::ntlm::{crypto, FileTime, ServerConfig, ServerHandshake};
use libfuzzer_sys::fuzz_target;

const NEGOTIATE: &[u8] = &[
    0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, 0x01, 0x00, 0x00, 0x00, 0x37, 0x82, 0x08, 0xe2,
    0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00,
    0x00, 0x0c, 0x04, 0x00, 0x00, 0x00, 0x00, 0x0f,
];
const NOW: FileTime = FileTime(134_406_649_650_810_836);

fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut c = ServerConfig::new("EXAMPLE", "GATEWAY");
            c.dns_domain_name = Some("example.com".into());
            c.dns_computer_name = Some("gw.example.com".into());
            Arc::new(c)
        })
        .clone()
}

fn hash() -> [u8; 16] {
    static HASH: OnceLock<[u8; 16]> = OnceLock::new();
    *HASH.get_or_init(|| crypto::nt_hash("Secret123"))
}

fuzz_target!(|data: &[u8]| {
    let start = || {
        ServerHandshake::new(config(), [7; 8], NOW)
            .process_negotiate(NEGOTIATE)
            .expect("the fixed NEGOTIATE is valid")
            .0
    };
    let local =
        start().process_authenticate(data, NOW, |user, _domain| (user == "alice").then(hash));
    if let Err(e) = &local {
        let _ = e.to_string();
    }
    // Pass-through: structural checks, then MIC with a key "from the DC".
    if let Ok(received) = start().receive_authenticate(data, NOW) {
        let _ = (
            received.user(),
            received.domain(),
            received.lm_response(),
            received.nt_response(),
        );
        let _ = received.complete_with_session_base_key(&[0x42; 16]);
    }
});
