//! L7 virtual servers end to end (issue 21): `protocol = "http"` served by
//! the appliance's own reverse proxy through the exception path. The real
//! `furiwake` binary in the lab of `scripts/netns.sh` (the client at
//! 192.0.2.10, the box between br-out and br-in, nginx in three server
//! namespaces), real curl clients.
//!
//! What crosses the box: the client's TCP to the VIP is handed to the
//! kernel in the appliance's own network namespace (the host link), the
//! engine's connections to the servers leave from the source address
//! through the workers again; the servers see the box, never the client.

use furiwake_e2e::*;
use std::time::Duration;

const BACKENDS: u32 = LAB_BACKENDS;

fn pool(name: &str, port: u16) -> String {
    let mut s = format!("[[pool]]\nname = \"{name}\"\nservers = [\n");
    for n in 1..=BACKENDS {
        s.push_str(&format!("  {{ address = \"{}:{port}\" }},\n", server_ip(n)));
    }
    s.push_str("]\n");
    s
}

/// `web`, `protocol = "http"` on VIP:80 over `pool` (no forwarding key:
/// the L7 engine opens its own connections).
fn http_vs(name: &str, port: u16, pool: &str, extra: &str) -> String {
    format!("[[virtual_server]]\nname = \"{name}\"\naddress = \"{VIP}:{port}\"\nprotocol = \"http\"\npool = \"{pool}\"\n{extra}\n")
}

fn open(tag: char, name: &str) -> Option<Lab> {
    let mut lab = Lab::open(tag, &format!("l7-{name}"), &["nginx"])?;
    for n in 1..=BACKENDS {
        lab.start_nginx(n, 0);
    }
    Some(lab)
}

#[test]
fn an_http_virtual_server_is_proxied_round_robin_from_the_self_ip() {
    let Some(mut lab) = open('h', "rr") else { return };
    lab.start(&format!("{}\n{}", pool("web", 80), http_vs("web", 80, "web", "")));
    let out = lab.fw_output();
    assert!(out.contains("host link: fwhost0") && out.contains("l7: engine up"), "{out}");
    // Each request on a connection of its own; the engine picks per
    // request.
    let answers = lab.curl_ids(VIP, 30);
    let t = tally(&answers);
    assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "round robin over three: {t:?}");
    // The servers saw the box's self IP on their side, not the client.
    for n in 1..=BACKENDS {
        let log: Vec<String> = lab.nginx_access_log(n).into_iter().filter(|l| l.contains("GET /id ")).collect();
        assert_eq!(log.len(), 10, "srv{n}: {log:?}");
        assert!(log.iter().all(|l| l.starts_with("198.51.100.1 ")), "srv{n} saw the self IP as the client: {log:?}");
    }
    // Through the exception path both ways, counted.
    let r = lab.report_until(Duration::from_secs(5), |r| counter(r, "  host:", "in").is_some_and(|n| n >= 30)).unwrap_or_else(|r| panic!("{r}"));
    assert!(counter(&r, "  host:", "out").is_some_and(|n| n >= 3), "the engine's connections to the servers left through the workers:\n{r}");
    assert!(r.contains("requests 30 responses 1xx 0 2xx 30 "), "the engine read and answered 30:\n{r}");
}

#[test]
fn no_server_gets_a_503_and_a_dead_one_a_502() {
    let Some(mut lab) = open('i', "errors") else { return };
    // A pool whose only server listens on nothing.
    let dead = format!("[[pool]]\nname = \"dead\"\nservers = [ {{ address = \"{}:81\" }} ]\n", server_ip(1));
    let empty = "[[pool]]\nname = \"empty\"\nservers = []\n";
    lab.start(&format!("{dead}\n{empty}\n{}\n{}", http_vs("dead", 80, "dead", ""), http_vs("empty", 8080, "empty", "")));
    let code = |port: u16| lab.topo.exec("client", &format!("curl -s -o /dev/null -w '%{{http_code}}' -m 10 http://{VIP}:{port}/id")).trim().to_string();
    assert_eq!(code(80), "502", "{}", lab.fw_output());
    assert_eq!(code(8080), "503", "{}", lab.fw_output());
}

/// A pool of backend `n` alone.
fn pool_of(name: &str, n: u32) -> String {
    format!("[[pool]]\nname = \"{name}\"\nservers = [ {{ address = \"{}:80\" }} ]\n", server_ip(n))
}

#[test]
fn rules_switch_by_host_header_and_path_and_the_rest_gets_the_default_pool() {
    let Some(mut lab) = open('j', "rules") else { return };
    let rules = r#"
[[virtual_server.rule]]
host = "a.example"
pool = "a"

[[virtual_server.rule]]
header = { name = "User-Agent", contains = "Mobile" }
pool = "mobile"

[[virtual_server.rule]]
path_prefix = "/api/"
pool = "a"
"#;
    lab.start(&format!("{}\n{}\n{}\n{}", pool_of("a", 1), pool_of("mobile", 2), pool_of("default", 3), http_vs("web", 80, "default", rules)));
    let get = |args: &str, path: &str| lab.topo.exec("client", &format!("curl -s -S -m 10 {args} 'http://{VIP}{path}'")).trim().to_string();
    for _ in 0..3 {
        assert_eq!(get("-H 'Host: a.example'", "/id"), "srv1", "{}", lab.fw_output());
        assert_eq!(get("-H 'Host: A.EXAMPLE:80'", "/id"), "srv1", "the host without case or port");
        assert_eq!(get("-A 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148'", "/id"), "srv2", "a mobile client elsewhere");
        assert_eq!(get("", "/id"), "srv3", "no rule: the default pool");
        assert_eq!(get("-H 'Host: b.example'", "/id"), "srv3", "an unknown host: the default pool");
    }
    let _ = get("", "/api/orders?id=7");
    let api: Vec<String> = lab.nginx_access_log(1).into_iter().filter(|l| l.contains("GET /api/orders?id=7 ")).collect();
    assert_eq!(api.len(), 1, "the path rule sent /api/ to pool a (srv1): {:?}", lab.nginx_access_log(1));
    // Paths that nginx reads as /api/...: the rule reads them so too.
    for (n, path) in [(8, "/x/../api/orders"), (9, "//api/orders"), (10, "/%61pi/orders"), (11, "/x/..%2Fapi/orders"), (12, "/api;v=1/orders")] {
        let _ = get("--path-as-is", &format!("{path}?id={n}"));
        let hit = lab.nginx_access_log(1).iter().any(|l| l.contains(&format!("{path}?id={n} ")));
        assert!(hit, "{path} went past the /api/ rule: srv1 has {:?}", lab.nginx_access_log(1));
    }
    // Two Host headers (RFC 9112 §3.2): refused, so a rule and the server
    // cannot read two different hosts.
    let two = "import socket; s = socket.create_connection(('192.0.2.100', 80)); s.sendall(b'GET /id HTTP/1.1\\r\\nHost: b.example\\r\\nHost: a.example\\r\\n\\r\\n'); print(s.recv(100).split(b' ')[1].decode())";
    assert_eq!(lab.topo.exec("client", &format!("/usr/bin/python3 -c {}", shell_quote(two))).trim(), "400");
    // User information in the target (RFC 9110 §4.2.4): refused.
    let userinfo = two.replace("GET /id HTTP/1.1\\r\\nHost: b.example\\r\\nHost: a.example", "GET http://u@a.example/id HTTP/1.1\\r\\nHost: a.example");
    assert_eq!(lab.topo.exec("client", &format!("/usr/bin/python3 -c {}", shell_quote(&userinfo))).trim(), "400", "{userinfo}");
    // A fully qualified host's root dot: the same host.
    assert_eq!(get("-H 'Host: a.example.'", "/id"), "srv1");
    let r = lab.report();
    for (rule, hits) in [(1, 7), (2, 3), (3, 6)] {
        assert!(r.contains(&format!("rule {rule}: pool {}; hits {hits}\n", if rule == 2 { "mobile" } else { "a" })), "rule {rule} hit {hits} times:\n{r}");
    }
}

/// Backend `n`'s `client.log` (its 9081 and 9082 listeners: the headers
/// and the PROXY protocol's address it got).
fn client_log(lab: &Lab, n: u32) -> Vec<String> {
    std::fs::read_to_string(lab.backend_dir(n).join("logs/client.log")).unwrap_or_default().lines().map(str::to_string).collect()
}

fn client_logs(lab: &Lab) -> Vec<String> {
    (1..=BACKENDS).flat_map(|n| client_log(lab, n)).collect()
}

#[test]
fn the_servers_learn_the_client_from_x_forwarded_for_and_forwarded_and_headers_are_rewritten() {
    let Some(mut lab) = open('k', "client-addr") else { return };
    // (Keys first: a key after a table belongs to that table.)
    let untrusted = r#"client_address = ["x-forwarded-for", "forwarded"]
trusted_proxies = ["203.0.113.0/24"]

[[virtual_server.http_response]]
action = "add-header"
name = "X-Served-By"
value = "furiwake"

[[virtual_server.http_response]]
action = "del-header"
name = "Server"

[[virtual_server.http_response]]
action = "replace-header"
name = "Content-Type"
match = "^text/(.*)$"
value = "text/$1; charset=utf-8"
"#;
    let trusted = "client_address = [\"x-forwarded-for\"]\ntrusted_proxies = [\"192.0.2.0/24\"]\n";
    lab.start(&format!("{}\n{}\n{}", pool("c", 9081), http_vs("untrusted", 80, "c", untrusted), http_vs("trusted", 8080, "c", trusted)));
    // A client that is no trusted proxy cannot plant an address.
    let head = lab.topo.exec("client", &format!("curl -s -S -m 10 -D - -o /dev/null -H 'X-Forwarded-For: 203.0.113.7' http://{VIP}/id"));
    assert!(head.contains("X-Served-By: furiwake") || head.contains("x-served-by: furiwake"), "added: {head}");
    assert!(!head.to_ascii_lowercase().contains("\nserver:"), "removed: {head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; charset=utf-8"), "replaced: {head}");
    let logs = client_logs(&lab);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].starts_with("9081 198.51.100.1 xff=\"192.0.2.10\" fwd=\"for=192.0.2.10;proto=http;host=\\x22192.0.2.100\\x22\""), "{logs:?}");
    // A trusted one's list is kept and the client appended.
    let _ = lab.topo.exec("client", &format!("curl -s -S -m 10 -H 'X-Forwarded-For: 203.0.113.7' http://{VIP}:8080/id"));
    let logs = client_logs(&lab);
    assert!(logs.iter().any(|l| l.contains("xff=\"203.0.113.7, 192.0.2.10\" fwd=\"-\"")), "{logs:?}");
}

#[test]
fn the_servers_learn_the_client_from_the_proxy_protocol_v1_and_v2() {
    let Some(mut lab) = open('l', "proxy-proto") else { return };
    let v1 = "client_address = [\"proxy-v1\"]\n";
    let v2 = "client_address = [\"proxy-v2\"]\n";
    lab.start(&format!("{}\n{}\n{}", pool("pp", 9082), http_vs("v1", 80, "pp", v1), http_vs("v2", 8080, "pp", v2)));
    // Three requests on one client connection, then one on another: the
    // servers' connections carry one client each.
    let (ok, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 10 http://{VIP}/id http://{VIP}/id http://{VIP}/id && curl -s -S -m 10 http://{VIP}:8080/id"));
    assert!(ok, "{out}\n{}", lab.fw_output());
    assert_eq!(out.lines().filter(|l| l.starts_with("srv")).count(), 4, "{out}");
    let logs = client_logs(&lab);
    assert_eq!(logs.len(), 4, "{logs:?}");
    for l in &logs {
        assert!(l.starts_with("9082 198.51.100.1 ") && l.contains("pp=\"192.0.2.10\""), "nginx took the client's address from the PROXY header: {logs:?}");
    }
}

#[test]
fn a_slowloris_is_cut_at_the_header_deadline_while_20_others_are_served_and_the_limits_answer() {
    let Some(mut lab) = open('m', "limits") else { return };
    let page = lab.dir.write("sorry.html", "<html><body>sorry from the lab</body></html>\n");
    let limits = "limits = { header_timeout_s = 2, max_header_bytes = 8192, max_body_bytes = 1000 }\n";
    let check = "[[health_check]]\nname = \"tcp\"\nkind = \"tcp\"\ninterval_ms = 200\ntimeout_ms = 150\nfall = 2\nrise = 1\n";
    let dead = format!("[[pool]]\nname = \"dead\"\nhealth_check = \"tcp\"\nservers = [ {{ address = \"{}:81\" }} ]\n", server_ip(1));
    let sorry = format!("sorry_page = \"{}\"\n", page.display());
    lab.start(&format!("{check}\n{}\n{dead}\n{}\n{}", pool("web", 80), http_vs("web", 80, "web", limits), http_vs("down", 8080, "dead", &sorry)));
    // Five connections that never finish their header, trickling a line
    // every half second for up to 40 s.
    let script = test_script("slowloris.py");
    let argv = ["python3", script.to_str().unwrap(), "--host", VIP, "--port", "80", "--conns", "5", "--every", "0.5", "--secs", "40"];
    let mut slow = Proc::spawn("slowloris", Some(&lab.topo.ns("client")), &argv, &lab.dir.path("slowloris.log"), false);
    slow.expect_output("listening", Duration::from_secs(10));
    // Meanwhile twenty others are served.
    let answers = lab.curl_ids(VIP, 20);
    assert_eq!(answers.len(), 20);
    let status = slow.wait(Duration::from_secs(60)).expect("the slowloris client ends");
    assert_eq!(status.code(), Some(0), "{}", slow.output());
    assert!(slow.output().contains("closed 5 of 5"), "every slow connection was cut at the header deadline (2 s), though it kept sending:\n{}", slow.output());
    // A header over the limit.
    let big = "x".repeat(10_000);
    let code = lab.topo.exec("client", &format!("curl -s -o /dev/null -w '%{{http_code}}' -m 10 -H 'X-Big: {big}' http://{VIP}/id"));
    assert!(code.trim() == "431" || code.trim() == "400", "a header over max_header_bytes: {code}");
    // A body over the limit, announced.
    let code = lab.topo.exec("client", &format!("curl -s -o /dev/null -w '%{{http_code}}' -m 10 --data-binary @/etc/services http://{VIP}/id"));
    assert_eq!(code.trim(), "413", "a body over max_body_bytes");
    // Every server of a pool down: the sorry page, with 503.
    let down = wait_for(Duration::from_secs(10), || {
        let out = lab.topo.exec("client", &format!("curl -s -m 5 -w '\\n%{{http_code}}' http://{VIP}:8080/id"));
        out.trim_end().ends_with("503").then_some(out)
    });
    let out = down.unwrap_or_else(|| panic!("no 503 from the dead pool:\n{}", lab.fw_output()));
    assert!(out.contains("sorry from the lab"), "the sorry page: {out}");
}

/// The engine's own deadlines (`modules/l7/activity.rs`): a kept-alive
/// connection outlives an answer that streams for twice
/// `header_timeout_s`, and closes `header_timeout_s` after an answer (not
/// `client_timeout_s`); a client that reads nothing of a 16 MiB answer
/// loses its connection after `client_timeout_s`, over HTTP/1.1 (a zero
/// TCP window) and h2 (a stream window it never opens); an h2 client that
/// only sends PINGs is closed at the head deadline; a request body that
/// pauses gets 408.
#[test]
fn keep_alive_outlives_a_long_answer_and_clients_that_stall_are_cut() {
    let Some(mut lab) = Lab::open('q', "l7-stall", &["nginx"]) else { return };
    lab.start_nginx(1, 16);
    let limits = "limits = { header_timeout_s = 2, client_timeout_s = 6 }\n";
    lab.start(&format!("{}\n{}", pool_of("web", 1), http_vs("web", 80, "web", limits)));
    // /slow: 16 MiB at 4 MiB/s; then /id on the same connection.
    let out = lab.topo.exec("client", &format!("curl -s -m 30 -o /dev/null -o /dev/null -w '%{{num_connects}} %{{size_download}}\\n' http://{VIP}/slow http://{VIP}/id"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["1 16777216", "0 5"], "the second request rides the first's connection:\n{out}\n{}", lab.fw_output());
    let script = test_script("stall.py");
    let s = script.to_str().unwrap();
    let run = |args: String| lab.topo.exec("client", &format!("/usr/bin/python3 {args}"));
    // Idle after an answer: closed at the head deadline (2 s), well
    // before client_timeout_s (6 s) would say.
    let out = run(format!("{s} idle --host {VIP} --port 80 --path /id --wait 15"));
    let after: f64 = out.trim().strip_prefix("closed after ").and_then(|r| r.strip_suffix(" s")).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{out}"));
    assert!(after < 5.0, "an idle connection lasts the head deadline, not the client timeout: {out}");
    // A client that reads nothing (a 4 KiB window) for 9 s.
    let out = run(format!("{s} read --host {VIP} --port 80 --path /big --wait 9"));
    assert!(out.contains("ended early"), "the box ends a connection whose client reads nothing:\n{out}");
    assert!(lab.report().contains(" stalled 1 "), "counted as stalled");
    // h2: a stream window never opened; PINGs and nothing else.
    let h2 = test_script("h2_stall.py");
    let h2 = h2.to_str().unwrap();
    let closed_after = |out: &str| -> f64 {
        out.lines().find_map(|l| l.strip_prefix("closed after ")).and_then(|r| r.strip_suffix(" s")).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not closed:\n{out}\n{}", lab.fw_output()))
    };
    let out = run(format!("{h2} window --host {VIP} --port 80 --path /big --wait 30"));
    assert!(out.contains("status 200") && !out.contains("goaway"), "the answer began, and the box closed without a GOAWAY:\n{out}");
    let t = closed_after(&out);
    assert!(t >= 5.0, "not before client_timeout_s (6 s): {out}");
    assert!(lab.report().contains(" stalled 2 "), "an h2 stream the client never lets data into ends its connection as stalled");
    let out = run(format!("{h2} ping --host {VIP} --port 80 --wait 15"));
    assert!(out.contains("goaway 0"), "PINGs are not requests: a GOAWAY (NO_ERROR) at the head deadline:\n{out}");
    assert!(closed_after(&out) < 5.0, "closed at the head deadline (2 s), PINGs notwithstanding: {out}");
    // One that never acknowledges the GOAWAY's PING: closed by force,
    // client_timeout_s (6 s) after the GOAWAY at the latest.
    let out = run(format!("{h2} ping --no-ack --host {VIP} --port 80 --wait 20"));
    assert!(out.contains("goaway 0") && closed_after(&out) < 12.0, "{out}");
    // A body announced as 100 bytes that stops after 10.
    let out = run(format!("{s} body --host {VIP} --port 80 --path /body --send 10 --of 100 --wait 15"));
    assert_eq!(out.trim(), "status 408", "{out}\n{}", lab.fw_output());
    let r = lab.report();
    assert!(r.contains(" stalled 2 "), "two connections cut for clients that took nothing (HTTP/1.1, h2), no more:\n{r}");
}

#[test]
fn a_websocket_upgrade_passes_through_and_echoes_over_one_connection() {
    let Some(mut lab) = open('n', "websocket") else { return };
    let script = test_script("ws_echo.py");
    let ip = server_ip(1);
    lab.serve("ws-srv1", 1, &["python3", script.to_str().unwrap(), "serve", "--addr", &ip, "--port", "9000"]);
    let ws = format!("[[pool]]\nname = \"ws\"\nservers = [ {{ address = \"{ip}:9000\" }} ]\n");
    lab.start(&format!("{ws}\n{}", http_vs("ws", 80, "ws", "")));
    let (ok, out) = lab.topo.try_exec("client", &format!("python3 {} ask --addr {VIP} --port 80 --text ping --times 3", script.display()));
    assert!(ok, "{out}\n{}", lab.fw_output());
    assert_eq!(out.lines().filter(|l| *l == "echo: ping").count(), 3, "{out}");
}

/// `n` sequential requests from one shell in the client namespace, each a
/// curl of its own with `args` (a cookie jar, a header): the answers.
fn curl_n(lab: &Lab, n: usize, args: &str, url: &str) -> Vec<String> {
    let cmd = format!("for i in $(seq {n}); do curl -s -S -m 5 {args} '{url}' || echo FAIL; done");
    let (ok, out) = lab.topo.try_exec("client", &cmd);
    let answers: Vec<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    assert!(ok && answers.len() == n && !answers.iter().any(|a| a.contains("FAIL")), "{cmd}: {out}\n{}", lab.fw_output());
    answers
}

fn one_server(answers: &[String]) -> bool {
    answers.iter().all(|a| a == &answers[0]) && answers[0].starts_with("srv")
}

#[test]
fn cookie_insert_keeps_a_cookie_jar_on_one_server_while_cookieless_clients_spread() {
    let Some(mut lab) = open('o', "cookie-insert") else { return };
    let persist = "persistence = { kind = \"cookie-insert\", cookie = \"FWSRV\", expires_s = 3600, http_only = true, same_site = \"lax\" }\n";
    lab.start(&format!("{}\n{}", pool("web", 80), http_vs("web", 80, "web", persist)));
    let jar = lab.dir.path("jar.txt");
    let with_jar = curl_n(&lab, 20, &format!("-c {0} -b {0}", jar.display()), &format!("http://{VIP}/id"));
    assert!(one_server(&with_jar), "20 requests with the cookie jar on one server: {with_jar:?}");
    let without = lab.curl_ids(VIP, 30);
    assert_eq!(tally(&without).values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "cookie-less clients spread");
    let head = lab.topo.exec("client", &format!("curl -s -D - -o /dev/null http://{VIP}/id"));
    let set = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(set.contains("FWSRV=") && set.contains("Path=/") && set.contains("Max-Age=3600") && set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    assert!(!set.contains("198.51.100."), "the token does not show the server's address: {set}");
}

#[test]
fn passive_rewrite_hash_session_id_and_header_persistence_each_keep_a_client() {
    let Some(mut lab) = open('p', "persist-kinds") else { return };
    let kinds = [
        ("passive", 80, "persistence = { kind = \"cookie-passive\", cookie = \"SRVID\" }\n"),
        ("rewrite", 8080, "persistence = { kind = \"cookie-rewrite\", cookie = \"SRVID\" }\n"),
        ("hash", 8081, "persistence = { kind = \"cookie-hash\", cookie = \"APPSESSION\" }\n"),
        ("session", 8082, "persistence = { kind = \"session-id\", cookie = \"JSESSIONID\", query = \"sid\" }\n"),
        ("terminal", 8083, "persistence = { kind = \"header\", header = \"X-Terminal-Id\" }\n"),
    ];
    let socket = lab.dir.path("console.sock");
    let mut cfg = format!("[console]\nsocket = \"{}\"\n\n{}", socket.display(), pool("web", 80));
    for (name, port, p) in kinds {
        cfg.push_str(&http_vs(name, port, "web", p));
    }
    lab.start(&cfg);
    // Passive: the server's own cookie, learned from its answer.
    let jar = lab.dir.path("passive.txt");
    let j = format!("-c {0} -b {0}", jar.display());
    let first = curl_n(&lab, 1, &j, &format!("http://{VIP}/passive"));
    let then = curl_n(&lab, 10, &j, &format!("http://{VIP}/id"));
    assert!(then.iter().all(|a| *a == first[0]), "passive: {first:?} then {then:?}");
    // Rewrite: the server's empty cookie filled in by the box.
    let jar = lab.dir.path("rewrite.txt");
    let j = format!("-c {0} -b {0}", jar.display());
    let first = curl_n(&lab, 1, &j, &format!("http://{VIP}:8080/rewrite"));
    let then = curl_n(&lab, 10, &j, &format!("http://{VIP}:8080/id"));
    assert!(then.iter().all(|a| *a == first[0]), "rewrite: {first:?} then {then:?}");
    // Hash: one application cookie value, one server; others spread.
    let same = curl_n(&lab, 10, "-b APPSESSION=abc123", &format!("http://{VIP}:8081/id"));
    assert!(one_server(&same), "hash: {same:?}");
    let many: std::collections::BTreeSet<String> = (0..30).map(|i| curl_n(&lab, 1, &format!("-b APPSESSION=user{i}"), &format!("http://{VIP}:8081/id")).remove(0)).collect();
    assert!(many.len() >= 2, "different values spread: {many:?}");
    // Session ID: learned from the login's Set-Cookie, then found in the
    // URL (;jsessionid=) and in a query parameter, without cookies.
    let head = lab.topo.exec("client", &format!("curl -s -D - http://{VIP}:8082/login"));
    let id = head.lines().find_map(|l| l.split("JSESSIONID=").nth(1)).and_then(|r| r.split(';').next()).unwrap_or_else(|| panic!("no session: {head}")).trim().to_string();
    let server = head.lines().last().unwrap_or("").trim().to_string();
    let by_path = curl_n(&lab, 10, "", &format!("http://{VIP}:8082/who;jsessionid={id}"));
    assert!(by_path.iter().all(|a| *a == server), "session in the path: {server} then {by_path:?}");
    let by_query = curl_n(&lab, 10, "", &format!("http://{VIP}:8082/who?sid={id}"));
    assert!(by_query.iter().all(|a| *a == server), "session in the query: {server} then {by_query:?}");
    // Header: a terminal ID keeps its server.
    let t = curl_n(&lab, 10, "-H 'X-Terminal-Id: T-0042'", &format!("http://{VIP}:8083/id"));
    assert!(one_server(&t), "terminal: {t:?}");
    // `show persistence`: the learned session, its value cut (a session
    // ID is a credential), on the server that set it.
    let (ok, shown) = console_at(&socket, "show persistence virtual-server session");
    assert!(ok && shown.starts_with("1 persistence record(s)"), "{shown}");
    let n: u32 = server.trim_start_matches("srv").parse().unwrap_or_else(|_| panic!("/login answered {server:?}"));
    let row: Vec<&str> = shown.lines().nth(2).unwrap_or("").split_whitespace().collect();
    let cut: String = id.chars().take(12.min(id.len() / 2)).collect();
    assert_eq!(row.first().copied(), Some("vs:session"), "{shown}");
    assert_eq!(row.get(1).copied(), Some(format!("{cut}…({})", id.len()).as_str()), "{shown}");
    assert_eq!(row.get(2).copied(), Some(format!("{}:80", server_ip(n)).as_str()), "{shown}");
    let (ok, shown) = console_at(&socket, "show persistence virtual-server terminal");
    assert!(ok && shown.starts_with("1 persistence record(s)") && shown.contains(" T-0…(6) "), "never a whole value: {shown}");
}

/// Backend `n`'s `body.log` (its `/body` location: each body kept whole
/// in a file, named there).
fn body_files(lab: &Lab, n: u32) -> Vec<std::path::PathBuf> {
    let log = std::fs::read_to_string(lab.backend_dir(n).join("logs/body.log")).unwrap_or_default();
    log.lines().filter_map(|l| l.split_whitespace().nth(2)).map(std::path::PathBuf::from).collect()
}

#[test]
fn a_script_rule_routes_by_a_query_value_and_by_a_transaction_id_in_the_body_which_the_server_gets_whole() {
    let Some(mut lab) = open('r', "script") else { return };
    let rules = r#"
[[virtual_server.rule]]
script = '''
let t = query("tenant");
if t == "blue" { "blue" } else if t == "green" { "green" } else { () }
'''
pools = ["blue", "green"]

[[virtual_server.rule]]
method = "POST"
path_prefix = "/body"
script = '''
let id = body_match("<TransactionId>([0-9]+)</TransactionId>");
if id == () { () } else if parse_int(id) % 2 == 0 { "even" } else { "odd" }
'''
pools = ["even", "odd"]
body_bytes = 4096

[[virtual_server.rule]]
query = { name = "spin" }
script = "loop {}"
pools = ["blue"]
"#;
    let pools = [pool_of("blue", 1), pool_of("green", 2), pool_of("even", 1), pool_of("odd", 2), pool_of("default", 3)].concat();
    lab.start(&format!("{pools}\n{}", http_vs("web", 80, "default", rules)));
    let get = |path: &str| lab.topo.exec("client", &format!("curl -s -S -m 10 'http://{VIP}{path}'")).trim().to_string();
    for _ in 0..3 {
        assert_eq!(get("/id?tenant=blue"), "srv1", "{}", lab.fw_output());
        assert_eq!(get("/id?tenant=green"), "srv2");
        assert_eq!(get("/id?tenant=red"), "srv3", "(): on to the default pool");
        assert_eq!(get("/id"), "srv3");
    }
    assert_eq!(get("/id?spin=1"), "srv3", "a script stopped at its operations: the rule does not hold");
    // A SOAP message's transaction ID chooses the server; 200 KB of body
    // behind the 4096 bytes the script reads, sent with a length and
    // chunked.
    let filler: String = (0..200_000u32).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let post = |id: u32, chunked: bool| {
        let body = format!("<Envelope><Header><TransactionId>{id}</TransactionId></Header><Body>{filler}</Body></Envelope>");
        let file = lab.dir.write(&format!("soap-{id}-{chunked}.xml"), &body);
        let te = if chunked { "-H 'Transfer-Encoding: chunked'" } else { "" };
        let got = lab.topo.exec("client", &format!("curl -s -S -m 20 -H 'Content-Type: text/xml' {te} --data-binary @{} http://{VIP}/body", file.display())).trim().to_string();
        (got, body)
    };
    let mut sent = (Vec::new(), Vec::new());
    for (id, chunked) in [(42, false), (7, false), (1000, true), (13, true)] {
        let (got, body) = post(id, chunked);
        let want = if id % 2 == 0 { "srv1" } else { "srv2" };
        assert_eq!(got, want, "transaction {id} (chunked {chunked}): {}", lab.fw_output());
        if id % 2 == 0 { sent.0.push(body) } else { sent.1.push(body) }
    }
    // Each server got each body whole: the prefix, then the rest.
    for (n, bodies) in [(1, &sent.0), (2, &sent.1)] {
        let files = body_files(&lab, n);
        assert_eq!(files.len(), bodies.len(), "srv{n}: {files:?}");
        for (f, b) in files.iter().zip(bodies) {
            let got = std::fs::read(f).unwrap_or_default();
            assert!(got == b.as_bytes(), "srv{n}: {} of {} bytes, byte-identical", got.len(), b.len());
        }
    }
    assert!(body_files(&lab, 3).is_empty(), "no body to the default pool");
    let r = lab.report();
    assert!(r.contains("rule 1: script, pools [blue, green]; hits 6; script runs 17 errors 0 limits 0\n"), "every request ran rule 1's script:\n{r}");
    assert!(r.contains("rule 2: script, pools [even, odd]; hits 4; script runs 4 errors 0 limits 0\n"), "{r}");
    assert!(r.contains("rule 3: script, pools [blue]; hits 0; script runs 1 errors 0 limits 1\n"), "{r}");
}

/// The access log (`[l7] access_log`) and the answers by virtual server:
/// a combined-format line per answer with the virtual server and the
/// server, a client's quotes and newlines unable to forge a line, and
/// `show l7`'s classes and times.
#[test]
fn the_access_log_has_a_line_per_answer_and_show_l7_counts_them() {
    let Some(mut lab) = open('k', "access-log") else { return };
    let log = lab.dir.path("access.log");
    lab.start(&format!("[l7]\naccess_log = \"{}\"\n\n{}\n{}", log.display(), pool("web", 80), http_vs("web", 80, "web", "")));
    // (A header cannot carry a newline: hyper refuses such a request
    // before it is one. Quotes and backslashes it takes.)
    for ua in ["curl/8", "evil\" \\\"192.0.2.99 - - [x] \"GET /forged"] {
        let (ok, out) = lab.topo.try_exec("client", &format!("curl -s -S -m 10 -A {} http://{VIP}/id", shell_quote(ua)));
        assert!(ok, "{out}");
    }
    let code = lab.topo.exec("client", &format!("curl -s -o /dev/null -w '%{{http_code}}' -m 10 http://{VIP}/nothing-here"));
    assert_eq!(code.trim(), "404");
    // A request hyper refuses itself (no request line): counted and logged too.
    let bad = "import socket; s = socket.create_connection(('192.0.2.100', 80)); s.sendall(b'NOT HTTP AT ALL\\r\\n\\r\\n'); print(s.recv(100).split(b' ')[1].decode())";
    assert_eq!(lab.topo.exec("client", &format!("/usr/bin/python3 -c {}", shell_quote(bad))).trim(), "400");
    let lines = wait_for(Duration::from_secs(5), || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        (t.lines().count() >= 4).then_some(t)
    })
    .unwrap_or_else(|| panic!("four lines in {}:\n{}", log.display(), lab.fw_output()));
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[3].contains("\"- - HTTP/1.1\" 400 0 ") && lines[3].contains("vs=web server=-"), "{}", lines[3]);
    assert!(lines[0].starts_with(&format!("{CLIENT} - - [")) && lines[0].contains("\"GET /id HTTP/1.1\" 200 5 \"-\" \"curl/8\" vs=web server=198.51.100.1"), "{}", lines[0]);
    assert!(lines[1].contains("\"evil? ??192.0.2.99 - - [x] ?GET /forged\" vs=web"), "the client's quotes and backslashes are not the log's: {}", lines[1]);
    assert!(lines[2].contains("\"GET /nothing-here HTTP/1.1\" 404 "), "{}", lines[2]);
    let r = lab.report();
    assert!(r.contains("    answers 1xx 0 2xx 2 3xx 0 4xx 2 5xx 0; half within "), "{r}");
}
