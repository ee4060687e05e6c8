//! HTTPS virtual servers end to end (issue 21): TLS terminated by the L7
//! engine with certificates chosen by SNI, h2 by ALPN, resumption, OCSP
//! stapling, cookie persistence inside TLS, re-encryption to the servers
//! with verification, a certificate reload under a running download, and
//! what testssl.sh finds. The real `furiwake` binary in the lab of
//! `scripts/netns.sh`, real curl, openssl and nginx; certificates made
//! fresh by `tests/scripts/mkcerts.sh`.

use furiwake_e2e::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lab, with certificates in DIR/certs and each backend's (for its
/// 9443 listener) in its own directory, nginx started (`big_mb` MiB at
/// /big).
fn open(tag: char, name: &str, big_mb: u32) -> Option<(Lab, PathBuf)> {
    let mut lab = Lab::open(tag, &format!("tls-{name}"), &["nginx", "openssl"])?;
    let certs = lab.dir.path("certs");
    sh(&format!("{} {}", test_script("mkcerts.sh").display(), certs.display()));
    for n in 1..=LAB_BACKENDS {
        let d = lab.backend_dir(n);
        std::fs::create_dir_all(&d).expect("backend dir");
        for f in ["srv.pem", "srv.key"] {
            std::fs::copy(certs.join(f), d.join(f)).expect("copy the server certificate");
        }
        lab.start_nginx(n, big_mb);
    }
    Some((lab, certs))
}

fn pool(name: &str, port: u16, members: &[u32]) -> String {
    let servers: Vec<String> = members.iter().map(|n| format!("{{ address = \"{}:{port}\" }}", server_ip(*n))).collect();
    format!("[[pool]]\nname = \"{name}\"\nservers = [ {} ]\n", servers.join(", "))
}

fn console_section(lab: &Lab) -> String {
    format!("[console]\nsocket = \"{}\"\n", lab.dir.path("console.sock").display())
}

/// `curl` from the client with the test CA, `host` resolved to the VIP.
fn curl(lab: &Lab, ca: &Path, host: &str, port: u16, args: &str, path: &str) -> (bool, String) {
    lab.topo.try_exec("client", &format!("curl -s -S -m 10 --cacert {} --resolve {host}:{port}:{VIP} {args} https://{host}:{port}{path}", ca.display()))
}

fn get(lab: &Lab, ca: &Path, host: &str, port: u16, args: &str, path: &str) -> String {
    let (ok, out) = curl(lab, ca, host, port, args, path);
    assert!(ok, "https://{host}:{port}{path} {args}: {out}\nfuriwake:\n{}", lab.fw_output());
    out.trim().to_string()
}

#[test]
fn https_picks_the_certificate_by_sni_speaks_h2_resumes_staples_and_keeps_cookies() {
    let Some((mut lab, certs)) = open('t', "sni", 0) else { return };
    let c = |f: &str| certs.join(f).display().to_string();
    let services = format!(
        r#"{console}
{web}
{b}
{tls}
[[virtual_server]]
name = "secure"
address = "{VIP}:443"
protocol = "https"
pool = "web"
persistence = {{ kind = "cookie-insert", cookie = "FWSRV", secure = true }}
tls = {{ certificates = [ {{ cert = "{a_pem}", key = "{a_key}", ocsp = "{a_ocsp}" }}, {{ cert = "{b_pem}", key = "{b_key}" }} ] }}

[[virtual_server.rule]]
host = "b.example"
pool = "b"

[[virtual_server]]
name = "reencrypt"
address = "{VIP}:8443"
protocol = "https"
pool = "tls"
tls = {{ certificates = [ {{ cert = "{a_pem}", key = "{a_key}" }} ] }}
server_tls = {{ ca = "{ca}" }}

[[virtual_server]]
name = "untrusted"
address = "{VIP}:8080"
protocol = "http"
pool = "tls"
server_tls = {{ ca = "{other}" }}
"#,
        console = console_section(&lab),
        web = pool("web", 80, &[1, 2, 3]),
        b = pool("b", 80, &[2]),
        tls = pool("tls", 9443, &[1, 2, 3]),
        a_pem = c("a.pem"),
        a_key = c("a.key"),
        a_ocsp = c("a.ocsp"),
        b_pem = c("b.pem"),
        b_key = c("b.key"),
        ca = c("ca.pem"),
        other = c("other-ca.pem"),
    );
    lab.start(&services);
    let ca = certs.join("ca.pem");

    // SNI: each name gets the certificate valid for it (curl verifies
    // the name against the test CA), and b.example's rule its pool.
    for _ in 0..3 {
        assert!(["srv1", "srv2", "srv3"].contains(&get(&lab, &ca, "a.example", 443, "", "/id").as_str()));
        assert_eq!(get(&lab, &ca, "b.example", 443, "", "/id"), "srv2", "b.example: its certificate and its rule's pool");
        assert!(["srv1", "srv2", "srv3"].contains(&get(&lab, &ca, "www.a.example", 443, "", "/id").as_str()), "a wildcard name");
    }
    // h2 by ALPN, HTTP/1.1 when the client asks for it alone.
    assert_eq!(get(&lab, &ca, "a.example", 443, "--http2 -o /dev/null -w '%{http_version}'", "/id"), "2");
    assert_eq!(get(&lab, &ca, "a.example", 443, "--http1.1 -o /dev/null -w '%{http_version}'", "/id"), "1.1");

    // Cookie persistence inside HTTPS: a jar's 20 requests stay on one
    // server, a client without one is spread.
    let jar = lab.dir.path("jar");
    let kept: Vec<String> = (0..20).map(|_| get(&lab, &ca, "a.example", 443, &format!("-b {0} -c {0}", jar.display()), "/id")).collect();
    assert!(kept.iter().all(|k| *k == kept[0]), "one server for the cookie's client: {kept:?}");
    let jar_text = std::fs::read_to_string(&jar).unwrap_or_default();
    assert!(jar_text.contains("FWSRV") && jar_text.contains("TRUE"), "a Secure FWSRV cookie in the jar:\n{jar_text}");
    let spread: Vec<String> = (0..12).map(|_| get(&lab, &ca, "a.example", 443, "", "/id")).collect();
    assert!(tally(&spread).len() >= 2, "cookie-less clients spread: {spread:?}");

    // Resumption. TLS 1.2: openssl's -reconnect resumes five times (by
    // ticket). TLS 1.3: its -reconnect leaves before the ticket arrives
    // (so it never resumes, with openssl's own s_server too): a session
    // saved after the ticket came (stdin held open a second) and offered
    // again resumes.
    let s_client = |args: &str| lab.topo.exec("client", &format!("(sleep 1) | openssl s_client -connect {VIP}:443 -servername a.example -CAfile {} {args} 2>&1", ca.display()));
    let out = s_client("-tls1_2 -reconnect");
    assert!(out.matches("Reused, TLSv1.2").count() >= 5 && out.contains("Verify return code: 0 (ok)"), "TLS 1.2 reconnects resumed the session:\n{out}");
    let saved = lab.dir.path("session.pem");
    let first = s_client(&format!("-tls1_3 -sess_out {}", saved.display()));
    assert!(first.contains("New, TLSv1.3") && first.contains("Verify return code: 0 (ok)"), "{first}");
    let again = s_client(&format!("-tls1_3 -sess_in {}", saved.display()));
    assert!(again.contains("Reused, TLSv1.3"), "a TLS 1.3 ticket resumed the session:\n{again}");
    // OCSP stapling (RFC 6066 §8): a.example's response; none for b's.
    let status = |name: &str| lab.topo.exec("client", &format!("openssl s_client -connect {VIP}:443 -servername {name} -CAfile {} -status </dev/null 2>&1", ca.display()));
    assert!(status("a.example").contains("OCSP Response Status: successful"), "{}", status("a.example"));
    assert!(status("b.example").contains("OCSP response: no response sent"), "{}", status("b.example"));

    // Re-encryption: the servers' TLS listeners answer, their certificate
    // verified; a CA that signed none of them gets 502.
    for _ in 0..3 {
        assert!(["srv1", "srv2", "srv3"].contains(&get(&lab, &ca, "a.example", 8443, "", "/id").as_str()));
    }
    let tls_log: usize = (1..=LAB_BACKENDS).map(|n| std::fs::read_to_string(lab.backend_dir(n).join("logs/client.log")).unwrap_or_default().lines().filter(|l| l.starts_with("9443 ") && l.contains("GET /id")).count()).sum();
    assert_eq!(tls_log, 3, "the three requests reached the servers' HTTPS listeners");
    let code = lab.topo.exec("client", &format!("curl -s -o /dev/null -w '%{{http_code}}' -m 10 http://{VIP}:8080/id"));
    assert_eq!(code.trim(), "502", "a server the CA did not sign is not spoken to");

    // The engine's own account.
    let r = lab.report();
    let line = r.lines().find(|l| l.starts_with("tls handshakes ")).unwrap_or_else(|| panic!("no tls line:\n{r}"));
    let n = |k: &str| line.split_whitespace().skip_while(|w| *w != k).nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    assert!(n("handshakes") >= 50 && n("resumed") >= 6 && n("h2") >= 1, "{line}");
}

/// testssl.sh's protocol scan: nothing below TLS 1.2 is offered.
#[test]
fn testssl_finds_no_protocol_below_tls_1_2() {
    if !require(have("testssl"), "testssl (Debian's testssl.sh)") {
        return;
    }
    let Some((mut lab, certs)) = open('u', "testssl", 0) else { return };
    let c = |f: &str| certs.join(f).display().to_string();
    lab.start(&format!(
        "{}\n[[virtual_server]]\nname = \"secure\"\naddress = \"{VIP}:443\"\nprotocol = \"https\"\npool = \"web\"\ntls = {{ certificates = [ {{ cert = \"{}\", key = \"{}\" }} ] }}\n",
        pool("web", 80, &[1, 2, 3]),
        c("a.pem"),
        c("a.key")
    ));
    // testssl first asks openssl what it can do by connecting to the name
    // `invalid.`: in the client's namespace a DNS query waits for its
    // timeout (the default route leads to the box), some forty times. In
    // a mount namespace of its own its resolver is told to ask loopback,
    // which refuses at once.
    let resolv = lab.dir.write("resolv.conf", "nameserver 127.0.0.1\n");
    let script = lab.dir.write(
        "testssl.sh",
        &format!("mount --bind {} /etc/resolv.conf\nexec testssl --protocols --quiet --color 0 --warnings off --nodns min --ip one {VIP}:443\n", resolv.display()),
    );
    let out = lab.topo.exec("client", &format!("unshare -m sh {} 2>&1", script.display()));
    for (p, offered) in [("SSLv2", false), ("SSLv3", false), ("TLS 1 ", false), ("TLS 1.1", false), ("TLS 1.2", true), ("TLS 1.3", true)] {
        let line = out.lines().find(|l| l.trim_start().starts_with(p)).unwrap_or_else(|| panic!("no {p} line:\n{out}"));
        assert_eq!(line.contains("not offered"), !offered, "{p}: {line}\n{out}");
    }
}

#[test]
fn a_certificate_reload_keeps_a_running_download_going_and_a_readable_key_is_refused() {
    let Some((mut lab, certs)) = open('v', "reload", 4) else { return };
    let cfg = |dir: &Path| {
        format!(
            "{}\n{}\n[[virtual_server]]\nname = \"secure\"\naddress = \"{VIP}:443\"\nprotocol = \"https\"\npool = \"web\"\ntls = {{ certificates = [ {{ cert = \"{}\", key = \"{}\" }} ] }}\n",
            console_section(&lab),
            pool("web", 80, &[1, 2, 3]),
            dir.join("a.pem").display(),
            dir.join("a.key").display()
        )
    };
    // The files the configuration names: a copy the test replaces.
    let live = lab.dir.path("live");
    std::fs::create_dir_all(&live).expect("live dir");
    sh(&format!("cp -p {0}/a.pem {0}/a.key {1}/", certs.display(), live.display()));
    let config = format!("{}\n{LAB_INTERFACES}\n{}", platform_section(&lab.prefix), cfg(&live));
    lab.start_config(&config);
    let (old_ca, sock) = (certs.join("ca.pem"), lab.dir.path("console.sock"));

    // A download at 1 MiB/s (4 MiB: about four seconds).
    let file = lab.dir.path("big.download");
    let argv = format!("curl -s -S -m 60 --cacert {} --resolve a.example:443:{VIP} --limit-rate 1M -o {} -w '%{{http_code}} %{{size_download}}' https://a.example/big", old_ca.display(), file.display());
    let argv: Vec<&str> = vec!["sh", "-c", &argv];
    let mut dl = Proc::spawn("curl", Some(&lab.topo.ns("client")), &argv, &lab.dir.path("curl.log"), false);
    wait_for(Duration::from_secs(10), || std::fs::metadata(&file).ok().filter(|m| m.len() > 256 * 1024)).unwrap_or_else(|| panic!("the download did not start:\n{}", lab.fw_output()));

    // A key others may read: refused, with its place in the file.
    let newer = lab.dir.path("newer");
    sh(&format!("{} {}", test_script("mkcerts.sh").display(), newer.display()));
    sh(&format!("cp -p {0}/a.pem {0}/a.key {1}/ && chmod 644 {1}/a.key", newer.display(), live.display()));
    let (ok, said) = console_at(&sock, "config reload");
    assert!(!ok && said.contains("lb.toml:") && said.contains("mode 0644") && said.contains("nothing changed"), "{said}");
    // The old certificate still serves.
    assert!(curl(&lab, &old_ca, "a.example", 443, "-o /dev/null", "/id").0, "the running configuration stayed");
    // Mode 0600: the reload swaps the certificate.
    sh(&format!("chmod 600 {}/a.key", live.display()));
    let (ok, said) = console_at(&sock, "config reload");
    assert!(ok && said.contains("config reloaded"), "{said}");
    let new_ca = newer.join("ca.pem");
    assert_eq!(get(&lab, &new_ca, "a.example", 443, "-o /dev/null -w '%{http_code}'", "/id"), "200", "new connections get the new certificate");
    assert!(!curl(&lab, &old_ca, "a.example", 443, "-o /dev/null", "/id").0, "and not the old one");

    // The download made before the reload goes on to the end, whole.
    assert!(dl.wait(Duration::from_secs(40)).is_some_and(|s| s.success()), "the download ended: {}", dl.output());
    assert!(dl.output().contains(&format!("200 {}", 4 * 1048576)), "all of it: {}", dl.output());
    let got = sha256_file(&file);
    assert!((1..=LAB_BACKENDS).any(|n| sha256_file(&lab.backend_dir(n).join("www/big")) == got), "byte-identical to a server's file");
}

/// Every phase of a connection has the header deadline (review of issue
/// 21): a client that completes the TLS handshake and then says nothing,
/// one that sends part of the h2 preface over plain HTTP, and one that
/// stops inside its ClientHello are all closed by the box at
/// `header_timeout_s` (2 s here), long before they would give up (10 s),
/// while others are served.
#[test]
fn silent_clients_are_closed_at_the_deadline_in_every_phase() {
    let Some((mut lab, certs)) = open('w', "deadline", 0) else { return };
    let c = |f: &str| certs.join(f).display().to_string();
    lab.start(&format!(
        "{}\n[[virtual_server]]\nname = \"secure\"\naddress = \"{VIP}:443\"\nprotocol = \"https\"\npool = \"web\"\nlimits = {{ header_timeout_s = 2 }}\ntls = {{ certificates = [ {{ cert = \"{}\", key = \"{}\" }} ] }}\n\n[[virtual_server]]\nname = \"plain\"\naddress = \"{VIP}:80\"\nprotocol = \"http\"\npool = \"web\"\nlimits = {{ header_timeout_s = 2 }}\n",
        pool("web", 80, &[1, 2, 3]),
        c("a.pem"),
        c("a.key")
    ));
    // Each holds its side open 10 s (a process substitution: the shell
    // waits for the client alone); `date` before and after says when the
    // box closed it.
    let held = |input: &str, cmd: &str| -> u64 {
        let script = format!("s=$(date +%s); timeout 12 {cmd} < <(exec 2>/dev/null; {input}; sleep 10) >/dev/null 2>&1; echo elapsed $(( $(date +%s) - s ))");
        let out = lab.topo.exec("client", &format!("bash -c {}", shell_quote(&script)));
        out.lines().find_map(|l| l.strip_prefix("elapsed ")).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("{out}"))
    };
    let tls_silent = held("true", &format!("socat - OPENSSL:{VIP}:443,snihost=a.example,cafile={},commonname=a.example", c("ca.pem")));
    let h2_partial = held("printf 'PRI * HTTP/2.0\\r\\n'", &format!("socat - TCP:{VIP}:80"));
    let hello_partial = held("printf '\\026\\003\\001'", &format!("socat - TCP:{VIP}:443"));
    for (what, s) in [("silent after the handshake", tls_silent), ("part of the h2 preface", h2_partial), ("part of a ClientHello", hello_partial)] {
        assert!(s < 8, "{what}: closed after {s} s, not at the 2 s deadline\n{}", lab.fw_output());
    }
    assert_eq!(get(&lab, &certs.join("ca.pem"), "a.example", 443, "-o /dev/null -w '%{http_code}'", "/id"), "200");
}

/// `tls-session-id` persistence on a `tcp` virtual server (TLS passed
/// through): each server (nginx, session IDs cached, no tickets) resumes
/// only its own sessions, so `openssl s_client -reconnect` resumes five
/// times only if every reconnection reached the server of the first. The
/// servers are round robin otherwise.
#[test]
fn tls_session_id_persistence_brings_a_tcp_client_back_to_its_server() {
    let Some((mut lab, certs)) = open('x', "session-id", 0) else { return };
    lab.start(&format!(
        "{}\n[[virtual_server]]\nname = \"tls-tcp\"\naddress = \"{VIP}:9443\"\nprotocol = \"tcp\"\npool = \"tls\"\npersistence = {{ kind = \"tls-session-id\", timeout_s = 60 }}\n",
        pool("tls", 9443, &[1, 2, 3])
    ));
    let ca = certs.join("ca.pem");
    let out = lab.topo.exec("client", &format!("(sleep 1) | openssl s_client -connect {VIP}:9443 -tls1_2 -CAfile {} -reconnect 2>&1", ca.display()));
    assert!(out.matches("Reused, TLSv1.2").count() >= 5, "every reconnection resumed on the first connection's server:\n{out}\n{}", lab.fw_output());
    let r = lab.report();
    assert!(r.contains("tcp (TLS passed through, tls-session-id)") && r.contains("persistence records 1"), "{r}");
    // A plain client on its own (no session offered) is round robin.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let o = lab.topo.exec("client", &format!("curl -s -m 10 --cacert {} --resolve app.internal:9443:{VIP} https://app.internal:9443/id", ca.display()));
        seen.insert(o.trim().to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}
