//! Kerberos against a real Active Directory (Samba AD DC): the PAC gives the backend the
//! real NetBIOS domain, the user's SID and every group SID including nested groups, and
//! `allow_groups` rules use them.

mod support;

use iwa_testrealm::samba::{
    SambaDc, AD_ALICE, AD_ALICE_PASSWORD, AD_BOB, AD_BOB_PASSWORD, ALL_STAFF, HELPDESK_STAFF,
};
use iwa_testrealm::EchoRequest;
use support::*;

fn ad_gateway(
    realm: &iwa_testrealm::MitRealm,
    dc: &SambaDc,
    backend: &str,
    extra: &str,
) -> Gateway {
    let mut cfg = GatewayConfig::new(realm, backend)
        .keytab(dc.http_keytab())
        .kerberos_line(extra);
    cfg.env
        .push(("KRB5_CONFIG".into(), dc.krb5_conf().display().to_string()));
    Gateway::start(realm, &cfg)
}

#[test]
fn pac_gives_domain_sid_and_nested_groups() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let gw = ad_gateway(&realm, &dc, &echo.url(), "");
    let (code, body) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/whoami"));
    assert_eq!(
        code,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&body),
        gw.log()
    );
    let seen = EchoRequest::from_json(&body).unwrap();
    assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\alice"));
    assert_eq!(
        seen.header("x-remote-user-principal"),
        Some("alice@EXAMPLE.TEST")
    );
    let alice_sid = dc.user_sid(AD_ALICE).unwrap();
    assert_eq!(seen.header("x-remote-user-sid"), Some(alice_sid.as_str()));
    let sids: Vec<&str> = seen
        .header("x-remote-group-sids")
        .unwrap_or("")
        .split(',')
        .collect();
    let helpdesk = dc.group_sid(HELPDESK_STAFF).unwrap();
    let all_staff = dc.group_sid(ALL_STAFF).unwrap();
    let domain_users = format!("{}-513", dc.domain_sid());
    for want in [&helpdesk, &all_staff, &domain_users] {
        assert!(
            sids.contains(&want.as_str()),
            "{want} missing from {sids:?}"
        );
    }
    // The same domain SIDs LDAP reports as tokenGroups (BUILTIN groups such as
    // S-1-5-32-545 are the resource server's to add, not the PAC's).
    let token_groups = dc.token_groups(AD_ALICE).unwrap();
    let domain_prefix = format!("{}-", dc.domain_sid());
    for g in token_groups
        .iter()
        .filter(|g| g.starts_with(&domain_prefix))
    {
        assert!(
            sids.contains(&g.as_str()),
            "tokenGroups {g} missing from the PAC's {sids:?}"
        );
    }

    let (code, body) = curl_negotiate_ad(&dc, AD_BOB, AD_BOB_PASSWORD, &gw.url("/whoami"));
    assert_eq!(code, 200);
    let seen = EchoRequest::from_json(&body).unwrap();
    assert_eq!(seen.header("x-remote-user"), Some("EXAMPLE\\bob"));
    let bob_sids = seen.header("x-remote-group-sids").unwrap_or("");
    assert!(
        !bob_sids.contains(&helpdesk),
        "bob is not in Helpdesk Staff: {bob_sids}"
    );
}

#[test]
fn allow_groups_uses_nested_membership_from_the_pac() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let all_staff = dc.group_sid(ALL_STAFF).unwrap();
    let rule = format!(
        "\n[[route]]\npath = \"/staff\"\nallow_groups = [{}]\n",
        toml_str(&all_staff)
    );
    let gw = ad_gateway(&realm, &dc, &echo.url(), &rule);
    // alice is in Helpdesk Staff, which is in All Staff.
    let (code, _) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/staff/board"));
    assert_eq!(code, 200, "{}", gw.log());
    let (code, body) = curl_negotiate_ad(&dc, AD_BOB, AD_BOB_PASSWORD, &gw.url("/staff/board"));
    assert_eq!(code, 403);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains(&all_staff), "{page}");
}

#[test]
fn use_pac_false_keeps_the_bare_principal() {
    let realm = realm();
    let dc = SambaDc::standard().expect("Samba AD DC");
    let echo = echo();
    let gw = ad_gateway(&realm, &dc, &echo.url(), "use_pac = false\n");
    let (code, body) = curl_negotiate_ad(&dc, AD_ALICE, AD_ALICE_PASSWORD, &gw.url("/"));
    assert_eq!(code, 200);
    let seen = EchoRequest::from_json(&body).unwrap();
    assert_eq!(seen.header("x-remote-user"), Some("alice@EXAMPLE.TEST"));
    assert_eq!(seen.header("x-remote-user-sid"), None);
}
