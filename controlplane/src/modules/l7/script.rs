//! Rule scripts at run time (README, "L7 virtual servers", "Scripts"):
//! one Rhai engine for the whole engine (`config::script::sandbox`, with
//! `[l7] script_max_operations`) and the functions that read the request.
//! A script runs on the engine's thread, synchronously, bounded by its
//! operations; the request it reads is put in a thread-local for the run
//! (the functions are registered once and take no request argument).

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName};
use hyper::Request;
use regex::bytes::{Regex, RegexBuilder};
use rhai::{Dynamic, Engine, EvalAltResult, Position, AST};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

/// `body_match`'s patterns: the longest, and how many distinct ones are
/// kept compiled (past that a new one is a limit hit: nothing grows
/// without bound).
const MAX_PATTERN: usize = 1024;
const MAX_REGEXES: usize = 1024;
/// A compiled pattern's size at most (`regex`'s own limit is 10 MiB).
const REGEX_SIZE: usize = 1024 * 1024;

/// What a script reads of its request (the body aside).
#[derive(Debug, Clone, Default)]
pub struct Head {
    method: String,
    /// As rules read it (`view::normalized_path`), and as it came.
    path: String,
    raw_path: String,
    host: Option<String>,
    query: Option<String>,
    headers: HeaderMap,
    client: Option<IpAddr>,
}

impl Head {
    /// Of `req`, whose host is `host`, from `client`.
    pub fn of<B>(req: &Request<B>, host: Option<&str>, client: Option<IpAddr>) -> Head {
        Head {
            method: req.method().as_str().to_string(),
            path: super::view::normalized_path(req.uri().path()).into_owned(),
            raw_path: req.uri().path().to_string(),
            host: host.map(str::to_string),
            query: req.uri().query().map(str::to_string),
            headers: req.headers().clone(),
            client,
        }
    }
}

thread_local! {
    /// The request of the script running on this thread, and the part of
    /// its body it may read.
    static CURRENT: RefCell<Option<(Arc<Head>, Bytes)>> = const { RefCell::new(None) };
}

/// `f` of the current request (None outside a run).
fn current<T>(f: impl FnOnce(&Head, &Bytes) -> T) -> Option<T> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(h, b)| f(h, b)))
}

/// A string, or `()` for none.
fn text(v: Option<String>) -> Dynamic {
    v.map_or(Dynamic::UNIT, Dynamic::from)
}

/// What a run came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A string: the pool it names.
    Named(String),
    Bool(bool),
    /// `()`: the rule does not hold.
    Unit,
    /// A value of another type (its name).
    Other(String),
    /// The script failed (a function that does not exist, a wrong type,
    /// a bad regex, `throw`).
    Error(String),
    /// It passed a limit (operations, sizes, depth, variables).
    Limit(String),
}

/// The engine that runs the rules' scripts.
pub struct Runner {
    engine: Engine,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("script runner")
    }
}

impl Runner {
    /// With `max_operations` per run (`[l7] script_max_operations`).
    pub fn new(max_operations: u64) -> Runner {
        let mut e = crate::config::script::sandbox(max_operations);
        e.register_fn("method", || text(current(|h, _| h.method.clone())))
            .register_fn("path", || text(current(|h, _| h.path.clone())))
            .register_fn("raw_path", || text(current(|h, _| h.raw_path.clone())))
            .register_fn("host", || text(current(|h, _| h.host.clone()).flatten()))
            .register_fn("client_ip", || text(current(|h, _| h.client.map(|c| c.to_string())).flatten()))
            .register_fn("query", |name: &str| text(current(|h, _| super::view::query_param(h.query.as_deref(), name).map(str::to_string)).flatten()))
            .register_fn("header", |name: &str| text(current(|h, _| header(&h.headers, name)).flatten()))
            .register_fn("cookie", |name: &str| text(current(|h, _| super::persist::cookie(&h.headers, name)).flatten()))
            .register_fn("body", || text(Some(current(|_, b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default())));
        let regexes = Arc::new(Regexes::default());
        e.register_fn("body_match", move |pattern: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            let re = regexes.get(pattern)?;
            Ok(text(current(|_, b| first_group(&re, b)).flatten()))
        });
        Runner { engine: e }
    }

    /// Runs `ast` on the request `head` whose body's first bytes are
    /// `body`.
    pub fn run(&self, ast: &AST, head: &Arc<Head>, body: Bytes) -> Outcome {
        CURRENT.with(|c| *c.borrow_mut() = Some((Arc::clone(head), body)));
        let r = self.engine.eval_ast::<Dynamic>(ast);
        CURRENT.with(|c| *c.borrow_mut() = None);
        match r {
            Ok(v) if v.is_unit() => Outcome::Unit,
            Ok(v) if v.is_bool() => Outcome::Bool(v.as_bool().unwrap_or(false)),
            Ok(v) if v.is_string() => Outcome::Named(v.into_string().unwrap_or_default()),
            Ok(v) => Outcome::Other(v.type_name().to_string()),
            Err(e) => failure(&e),
        }
    }
}

/// A failed run: a limit, or an error.
fn failure(e: &EvalAltResult) -> Outcome {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => failure(inner),
        EvalAltResult::ErrorTooManyOperations(_) | EvalAltResult::ErrorTooManyVariables(_) | EvalAltResult::ErrorStackOverflow(_) | EvalAltResult::ErrorDataTooLarge(..) => Outcome::Limit(e.to_string()),
        _ => Outcome::Error(e.to_string()),
    }
}

/// Header `name`'s values, joined by `, ` (RFC 9110 §5.3), invalid UTF-8
/// replaced; None when absent.
fn header(h: &HeaderMap, name: &str) -> Option<String> {
    let n = HeaderName::from_bytes(name.as_bytes()).ok()?;
    let v: Vec<String> = h.get_all(&n).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
    (!v.is_empty()).then(|| v.join(", "))
}

/// What `re` finds in `b`: its first group that took part, or the whole
/// match when it has no group.
fn first_group(re: &Regex, b: &[u8]) -> Option<String> {
    let c = re.captures(b)?;
    let m = c.iter().skip(1).flatten().next().or_else(|| c.get(0))?;
    Some(String::from_utf8_lossy(m.as_bytes()).into_owned())
}

/// `body_match`'s patterns, compiled once.
#[derive(Default)]
struct Regexes(RwLock<HashMap<String, Arc<Regex>>>);

impl Regexes {
    fn get(&self, pattern: &str) -> Result<Arc<Regex>, Box<EvalAltResult>> {
        if let Some(r) = self.0.read().unwrap_or_else(PoisonError::into_inner).get(pattern) {
            return Ok(Arc::clone(r));
        }
        let too_large = |what: &str| Box::new(EvalAltResult::ErrorDataTooLarge(what.to_string(), Position::NONE));
        if pattern.len() > MAX_PATTERN {
            return Err(too_large("body_match's pattern"));
        }
        let re = RegexBuilder::new(pattern).size_limit(REGEX_SIZE).build().map_err(|e| format!("body_match: {e}"))?;
        let mut all = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if all.len() >= MAX_REGEXES {
            return Err(too_large("body_match's distinct patterns"));
        }
        let re = Arc::new(re);
        all.insert(pattern.to_string(), Arc::clone(&re));
        Ok(re)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ast(s: &str) -> AST {
        crate::config::script::compile(s).unwrap()
    }

    fn head(uri: &str, headers: &[(&str, &str)]) -> Arc<Head> {
        let mut b = Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let r = b.body(()).unwrap();
        Arc::new(Head::of(&r, Some("a.example"), Some(IpAddr::from([192, 0, 2, 10]))))
    }

    fn run(script: &str, h: &Arc<Head>, body: &str) -> Outcome {
        Runner::new(100_000).run(&ast(script), h, Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn the_functions_read_the_request() {
        let h = head("/api/x?tenant=blue&flag&e=", &[("Cookie", "a=1; sid=xyz"), ("X-A", "1"), ("x-a", "2")]);
        let s = |x: &str| Outcome::Named(x.to_string());
        assert_eq!(run("method()", &h, ""), s("POST"));
        assert_eq!(run("path()", &h, ""), s("/api/x"));
        assert_eq!(run("host()", &h, ""), s("a.example"));
        assert_eq!(run("client_ip()", &h, ""), s("192.0.2.10"));
        assert_eq!(run("query(\"tenant\")", &h, ""), s("blue"));
        assert_eq!(run("query(\"flag\")", &h, ""), s(""), "present without a value");
        assert_eq!(run("query(\"none\")", &h, ""), Outcome::Unit, "absent");
        assert_eq!(run("header(\"x-a\")", &h, ""), s("1, 2"));
        assert_eq!(run("header(\"x-b\")", &h, ""), Outcome::Unit);
        assert_eq!(run("cookie(\"sid\")", &h, ""), s("xyz"));
        assert_eq!(run("cookie(\"nope\")", &h, ""), Outcome::Unit);
        assert_eq!(run("body()", &h, "<a>1</a>"), s("<a>1</a>"));
        assert_eq!(run("body_match(\"<TransactionId>([0-9]+)</TransactionId>\")", &h, "<x><TransactionId>42</TransactionId>"), s("42"));
        assert_eq!(run("body_match(\"[0-9]+\")", &h, "ab 17 c"), s("17"), "no group: the match");
        assert_eq!(run("body_match(\"z\")", &h, "abc"), Outcome::Unit);
        assert!(matches!(run("body_match(\"(\")", &h, "abc"), Outcome::Error(_)), "a bad regex");
    }

    #[test]
    fn what_a_script_returns() {
        let h = head("/?tenant=green", &[]);
        let tenants = "let t = query(\"tenant\");\nif t == \"blue\" { \"blue\" } else if t == \"green\" { \"green\" } else { () }";
        assert_eq!(run(tenants, &h, ""), Outcome::Named("green".into()));
        assert_eq!(run(tenants, &head("/", &[]), ""), Outcome::Unit, "() compares unequal to a string");
        assert_eq!(run("path() == \"/\"", &h, ""), Outcome::Bool(true));
        assert_eq!(run("42", &h, ""), Outcome::Other("i64".into()));
        assert!(matches!(run("nosuch()", &h, ""), Outcome::Error(_)));
        assert!(matches!(run("throw \"no\"", &h, ""), Outcome::Error(_)));
        assert_eq!(run("print(\"x\"); debug(\"y\"); ()", &h, ""), Outcome::Unit, "no output, no failure");
        let id = "let id = body_match(\"<TransactionId>([0-9]+)</TransactionId>\");\nif id == () { () } else if parse_int(id) % 2 == 0 { \"even\" } else { \"odd\" }";
        assert_eq!(run(id, &h, "<TransactionId>42</TransactionId>"), Outcome::Named("even".into()));
        assert_eq!(run(id, &h, "<TransactionId>7</TransactionId>"), Outcome::Named("odd".into()));
        assert_eq!(run(id, &h, "none"), Outcome::Unit);
    }

    #[test]
    fn the_limits_stop_a_script() {
        let h = head("/", &[]);
        assert!(matches!(run("loop {}", &h, ""), Outcome::Limit(_)), "max_operations");
        assert!(matches!(run("let s = \"x\"; loop { s += s; }", &h, ""), Outcome::Limit(_)), "max_string_size");
        assert!(matches!(run("let a = []; loop { a.push(1); }", &h, ""), Outcome::Limit(_)), "max_array_size");
        assert!(matches!(run("let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }", &h, ""), Outcome::Limit(_)), "max_map_size");
        assert!(matches!(run("fn f(x) { f(x + 1) } f(0)", &h, ""), Outcome::Limit(_)), "max_call_levels");
        assert!(matches!(run(&format!("body_match(\"{}\")", "a".repeat(MAX_PATTERN + 1)), &h, ""), Outcome::Limit(_)), "a long pattern");
        // The engine is fine after: each run has its own budget.
        assert_eq!(run("\"ok\"", &h, ""), Outcome::Named("ok".into()));
    }

    #[test]
    fn distinct_patterns_are_capped() {
        let r = Regexes::default();
        for i in 0..MAX_REGEXES {
            assert!(r.get(&format!("a{i}")).is_ok());
        }
        assert!(r.get("a0").is_ok(), "a kept one");
        assert!(r.get("new").is_err(), "past the cap");
    }
}
