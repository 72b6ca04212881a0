//! The "tokenGroups-less fallback": a plain MIT realm, whose tickets carry no PAC with
//! groups, and no LDAP at all. A static `[directory] file` lists the users' groups (with
//! SIDs, nested); the backend sees them and group rules decide on them.

mod support;

use iwa_testrealm::EchoRequest;
use support::*;

const DOMAIN_SID: &str = "S-1-5-21-1000-2000-3000";

fn sid(rid: u32) -> String {
    format!("{DOMAIN_SID}-{rid}")
}

fn list(seen: &EchoRequest, name: &str) -> Vec<String> {
    seen.header(name)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A gateway on the MIT realm with a static directory: alice in `IWA\Helpdesk`, which
/// is in `IWA\All Staff`; bob in nothing.
fn gateway(realm: &iwa_testrealm::MitRealm, backend: &str, dir: &TempDir) -> Gateway {
    let file = dir.path().join("directory.toml");
    std::fs::write(
        &file,
        format!(
            "realm = \"IWA.TEST\"\n\n\
             [users]\n\"IWA\\\\alice\" = \"{alice}\"\n\"IWA\\\\bob\" = \"{bob}\"\n\n\
             [groups.\"IWA\\\\Helpdesk\"]\nsid = \"{helpdesk}\"\nmembers = [\"IWA\\\\alice\"]\n\n\
             [groups.\"IWA\\\\All Staff\"]\nsid = \"{staff}\"\nmembers = [\"IWA\\\\Helpdesk\"]\n",
            alice = sid(1104),
            bob = sid(1105),
            helpdesk = sid(2001),
            staff = sid(2002),
        ),
    )
    .unwrap();
    let cfg = GatewayConfig::new(realm, backend).kerberos_line(&format!(
        "realm_domains = {{ \"IWA.TEST\" = \"IWA\" }}\n\n\
         [directory]\nfile = {}\n\n\
         [[route]]\npath = \"/staff\"\nallow_groups = [\"IWA\\\\All Staff\"]\n\n\
         [[route]]\npath = \"/helpdesk\"\nallow_groups = [\"{}\"]\n",
        toml_str(&file.display().to_string()),
        sid(2001),
    ));
    Gateway::start(realm, &cfg)
}

#[test]
fn static_directory_gives_groups_to_a_realm_without_pac() {
    let realm = realm();
    let echo = echo();
    let tmp = TempDir::new("iwa-mit-dir").unwrap();
    let gw = gateway(&realm, &echo.url(), &tmp);
    let cc = alice(&realm);

    let r = curl_get(&cc, &realm, &gw.url("/whoami"), &[]);
    assert_eq!(r.status, 200, "{}", gw.log());
    let seen = EchoRequest::from_json(&r.body).unwrap();
    assert_eq!(seen.header("x-remote-user"), Some("IWA\\alice"));
    assert_eq!(
        seen.header("x-remote-user-principal"),
        Some("alice@IWA.TEST")
    );
    // No PAC: the user's SID comes from the file, with the groups.
    assert_eq!(seen.header("x-remote-user-sid"), Some(sid(1104).as_str()));
    let mut sids = list(&seen, "x-remote-group-sids");
    sids.sort();
    assert_eq!(sids, [sid(2001), sid(2002)], "{}", gw.log());
    let mut names = list(&seen, "x-remote-groups");
    names.sort();
    assert_eq!(names, ["IWA\\All Staff", "IWA\\Helpdesk"]);

    // Rules by (nested) group name and by group SID both see the file's groups.
    for path in ["/staff/board", "/helpdesk/queue"] {
        let r = curl_get(&cc, &realm, &gw.url(path), &[]);
        assert_eq!(r.status, 200, "alice on {path}\n{}", gw.log());
    }
    let bob = bob(&realm);
    let r = curl_get(&bob, &realm, &gw.url("/whoami"), &[]);
    assert_eq!(r.status, 200);
    let seen = EchoRequest::from_json(&r.body).unwrap();
    assert_eq!(list(&seen, "x-remote-group-sids"), Vec::<String>::new());
    for path in ["/staff/board", "/helpdesk/queue"] {
        let r = curl_get(&bob, &realm, &gw.url(path), &[]);
        assert_eq!(r.status, 403, "bob on {path}");
    }
}
