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
