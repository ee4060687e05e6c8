//! Completion of console lines, from the names the appliance knows.

use super::{resolve, ACTIONS, CONFIG_ACTIONS, CONN_OPTIONS, LEVELS, PERSIST_OPTIONS, POOL_ACTIONS, SHOW, TOP, VS_ACTIONS};

/// Object names the appliance knows, for completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Pool name and its servers' addresses.
    pub pools: Vec<(String, Vec<String>)>,
    /// Virtual-server name and its address.
    pub virtual_servers: Vec<(String, String)>,
}

impl Names {
    /// The `_names` answer: `pool NAME ADDR...` and `virtual-server NAME
    /// ADDR` lines.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (p, addrs) in &self.pools {
            s.push_str(&format!("pool {p} {}\n", addrs.join(" ")).replace(" \n", "\n"));
        }
        for (v, a) in &self.virtual_servers {
            s.push_str(&format!("virtual-server {v} {a}\n"));
        }
        s.trim_end().to_string()
    }

    pub fn parse(text: &str) -> Names {
        let mut n = Names::default();
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["pool", name, addrs @ ..] => n.pools.push((name.to_string(), addrs.iter().map(|s| s.to_string()).collect())),
                ["virtual-server", name, addr] => n.virtual_servers.push((name.to_string(), addr.to_string())),
                _ => {}
            }
        }
        n
    }

    fn all_servers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pools.iter().flat_map(|(_, a)| a.iter().cloned()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Completion of `line` (the text before the cursor): where the word being
/// completed starts, and the candidates for it, sorted.
pub fn complete(line: &str, names: &Names) -> (usize, Vec<String>) {
    let start = line.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let partial = &line[start..];
    let done: Vec<&str> = line[..start].split_whitespace().collect();
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let top = done.first().and_then(|w| resolve(w, TOP, "").ok());
    let candidates: Vec<String> = match (top, done.len()) {
        (_, 0) => owned(TOP),
        (Some("help"), 1) => owned(&["show", "server", "pool", "virtual-server", "config", "log", "help", "quit"]),
        (Some("help"), 2) if resolve(done[1], TOP, "").ok() == Some("show") => owned(SHOW),
        (Some("show"), 1) => owned(SHOW),
        (Some("show"), n) => match resolve(done[1], SHOW, "").ok() {
            Some("servers") if n == 2 => names.pools.iter().map(|p| p.0.clone()).collect(),
            Some("virtual-servers") if n == 2 => names.virtual_servers.iter().map(|v| v.0.clone()).collect(),
            Some("persistence") => option_values(&done[2..], PERSIST_OPTIONS, |o| match o {
                "virtual-server" => names.virtual_servers.iter().map(|v| v.0.clone()).collect(),
                "server" => names.all_servers(),
                _ => Vec::new(),
            }),
            Some("connections") => option_values(&done[2..], CONN_OPTIONS, |o| match o {
                "vip" => {
                    let mut v: Vec<String> = names.virtual_servers.iter().map(|v| v.1.clone()).collect();
                    v.dedup();
                    v
                }
                "server" => names.all_servers(),
                _ => Vec::new(),
            }),
            _ => Vec::new(),
        },
        (Some("server"), 1) => names.pools.iter().map(|p| p.0.clone()).collect(),
        (Some("server"), 2) => names.pools.iter().find(|p| p.0 == done[1]).map(|p| p.1.clone()).unwrap_or_default(),
        (Some("server"), 3) => owned(ACTIONS),
        (Some("pool"), 1) => names.pools.iter().map(|p| p.0.clone()).collect(),
        (Some("pool"), 2) => owned(POOL_ACTIONS),
        (Some("pool"), 3) if resolve(done[2], POOL_ACTIONS, "").ok() == Some("remove-server") => {
            names.pools.iter().find(|p| p.0 == done[1]).map(|p| p.1.clone()).unwrap_or_default()
        }
        (Some("virtual-server"), 1) => owned(VS_ACTIONS),
        (Some("virtual-server"), 2) if resolve(done[1], VS_ACTIONS, "").ok() == Some("remove") => {
            names.virtual_servers.iter().map(|v| v.0.clone()).collect()
        }
        (Some("virtual-server"), 4) if resolve(done[1], VS_ACTIONS, "").ok() == Some("add") => names.pools.iter().map(|p| p.0.clone()).collect(),
        (Some("config"), 1) => owned(CONFIG_ACTIONS),
        (Some("log"), 1) => owned(&["level"]),
        (Some("log"), 2) => owned(LEVELS),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = candidates.into_iter().filter(|c| c.starts_with(partial)).collect();
    out.sort();
    out.dedup();
    (start, out)
}

/// Completion after `show WHAT` options: `opts` alternate option and
/// value, so an odd count means a value of the last option is due
/// (`values`), else an option not used yet.
fn option_values(opts: &[&str], known: &[&str], values: impl Fn(&str) -> Vec<String>) -> Vec<String> {
    if opts.len() % 2 == 1 {
        resolve(opts[opts.len() - 1], known, "").map(values).unwrap_or_default()
    } else {
        let used: Vec<&str> = opts.iter().step_by(2).filter_map(|o| resolve(o, known, "").ok()).collect();
        known.iter().filter(|o| !used.contains(o)).map(|s| s.to_string()).collect()
    }
}
