//! `iwa demo`: the whole thing on one machine, with nothing to configure. A throwaway MIT
//! realm on 127.0.0.1 (its own temp dir; nothing global touched), a sample backend that
//! echoes what it receives, and the gateway itself (this binary, `iwa serve`, as a
//! child process with a generated config). Then a real client, `curl --negotiate`,
//! signs in as alice and we show what the backend saw.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iwa_testrealm::{
    free_tcp_port, ChildGuard, EchoBackend, EchoRequest, MitRealm, ALICE, ALICE_PASSWORD, BOB,
    BOB_PASSWORD,
};

/// Options for the demo.
pub struct DemoOptions {
    /// Exit after showing one authenticated request instead of waiting for Ctrl-C.
    pub once: bool,
}

fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn wait_ready(addr: SocketAddr, gateway: &mut ChildGuard, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http_get(addr, "/.iwa/healthz") {
            if r.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        if let Some(status) = gateway.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "the gateway exited ({status}) during start-up:\n{log}"
            ));
        }
        if Instant::now() > deadline {
            return Err("the gateway did not become ready within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn curl(args: &[&str], env: &[(&'static str, std::ffi::OsString)]) -> Result<String, String> {
    let out = Command::new("curl")
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl (is it installed?): {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the demo. Returns an error message when something did not work.
pub fn run(opts: DemoOptions) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the iwa binary: {e}"))?;
    println!("== iwa demo: Kerberos single sign-on through the gateway, all on 127.0.0.1\n");

    let realm = MitRealm::standard().map_err(|e| format!("cannot create the demo realm: {e}"))?;
    let dir = realm.dir().to_owned();
    println!(
        "1. MIT realm {} with a KDC on {} (pid {}), users alice and bob, service HTTP/localhost",
        realm.realm(),
        realm.kdc_addr(),
        realm.kdc_pid()
    );
    println!("   files: {}", dir.display());

    let backend = EchoBackend::start_blocking()
        .map_err(|e| format!("cannot start the sample backend: {e}"))?;
    println!(
        "2. sample backend on {} (answers with the request it received, as JSON)",
        backend.url()
    );

    let port = free_tcp_port().map_err(|e| format!("no free port: {e}"))?;
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let config_path = dir.join("iwa.toml");
    let config = format!(
        "# written by `iwa demo`\nlisten = \"{listen}\"\n\n[backend]\nurl = \"{}\"\n\n[kerberos]\nkeytab = \"{}\"\nrealm_domains = {{ \"{}\" = \"IWA\" }}\n\n[log]\naccess = true\n",
        backend.url(),
        realm.http_keytab().display(),
        realm.realm(),
    );
    std::fs::write(&config_path, config).map_err(|e| format!("cannot write the config: {e}"))?;
    let log_path = dir.join("iwa.log");
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("cannot create the log: {e}"))?;
    let rcache = dir.join("rcache");
    let _ = std::fs::create_dir_all(&rcache);
    let child = Command::new(&exe)
        .args(["serve", "--config"])
        .arg(&config_path)
        .env("KRB5_CONFIG", realm.krb5_conf())
        .env("KRB5RCACHEDIR", &rcache)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start `iwa serve`: {e}"))?;
    let mut gateway = ChildGuard::new(child);
    wait_ready(listen, &mut gateway, &log_path)?;
    println!(
        "3. gateway `iwa serve --config {}` on http://localhost:{port}/ (log: {})\n",
        config_path.display(),
        log_path.display()
    );

    let anon = curl(&["-s", "-i", &format!("http://localhost:{port}/")], &[])?;
    println!("-- without credentials: curl -i http://localhost:{port}/");
    for line in anon.lines().take_while(|l| !l.trim().is_empty()) {
        if line.starts_with("HTTP/") || line.to_ascii_lowercase().starts_with("www-authenticate") {
            println!("   {line}");
        }
    }

    let alice = realm
        .kinit(ALICE, ALICE_PASSWORD)
        .map_err(|e| format!("kinit alice failed: {e}"))?;
    let url = format!("http://localhost:{port}/hello");
    let body = curl(
        &[
            "-s",
            "--negotiate",
            "-u",
            ":",
            "-H",
            "X-Remote-User: EVIL\\mallory",
            &url,
        ],
        &alice.env(),
    )?;
    println!(
        "\n-- as alice (kinit done): curl --negotiate -u : -H 'X-Remote-User: EVIL\\mallory' {url}"
    );
    let seen = EchoRequest::from_json(body.as_bytes())
        .map_err(|e| format!("unexpected answer from the gateway: {e}: {body}"))?;
    println!("   the backend received:");
    for (k, v) in &seen.headers {
        if k.starts_with("x-") {
            println!("     {k}: {v}");
        }
    }
    let user = seen.header("x-remote-user").unwrap_or("(none)").to_owned();
    if user != "IWA\\alice" {
        return Err(format!(
            "expected the backend to see IWA\\alice, it saw {user}"
        ));
    }
    println!(
        "   -> the app sees IWA\\alice, verified by Kerberos; the forged header was dropped.\n"
    );

    let env_file = dir.join("client.env");
    let bob = realm
        .kinit(BOB, BOB_PASSWORD)
        .map_err(|e| format!("kinit bob failed: {e}"))?;
    let _ = std::fs::write(
        &env_file,
        format!(
            "export KRB5_CONFIG={}\nexport KRB5CCNAME={}\n",
            realm.krb5_conf().display(),
            bob.name()
        ),
    );
    if opts.once {
        println!("demo OK");
        return Ok(());
    }
    println!("Try it by hand in another terminal (bob is signed in there):");
    println!("   . {}", env_file.display());
    println!("   curl --negotiate -u : http://localhost:{port}/anything");
    println!("   klist; kdestroy; curl -i http://localhost:{port}/     # no ticket -> 401");
    println!("   python3 -c \"import requests, requests_gssapi as g; print(requests.get('http://localhost:{port}/', auth=g.HTTPSPNEGOAuth(mutual_authentication=g.REQUIRED)).json())\"");
    println!("   tail -f {}", log_path.display());
    println!("\nPress Ctrl-C to stop the gateway, the backend and the KDC.");
    wait_for_ctrl_c();
    println!("\nstopping");
    drop(gateway);
    drop(backend);
    drop(realm);
    Ok(())
}

fn wait_for_ctrl_c() {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        }),
        Err(_) => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}
