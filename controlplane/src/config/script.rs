//! The scripts of content-switching rules (`[[virtual_server.rule]]
//! script`, README "L7 virtual servers", "Scripts"): Rhai, compiled when
//! the configuration is loaded, so `check-config` refuses one that does
//! not compile at its line. The sandbox (what a script may do, and how
//! much) is made here for both the compiler and the L7 engine that runs
//! the scripts (`modules::l7::script`, which adds the request's
//! functions).

use rhai::{Engine, AST};
use std::ops::Range;
use std::sync::Arc;

/// The longest string a script may make, bytes (its `body()` is at most
/// `bounds::SCRIPT_BODY_BYTES`, three times that once invalid UTF-8 is
/// replaced).
pub const MAX_STRING: usize = 1024 * 1024;
/// The most elements of an array, and of an object map.
pub const MAX_ARRAY: usize = 10_000;
pub const MAX_MAP: usize = 10_000;
/// Nested function calls, and expressions nested within one (at the top
/// level, and within functions).
pub const MAX_CALL_LEVELS: usize = 16;
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_FN_EXPR_DEPTH: usize = 32;
/// Variables alive at once, and functions a script may define.
pub const MAX_VARIABLES: usize = 64;
pub const MAX_FUNCTIONS: usize = 32;

/// A Rhai engine with the limits of every script: `max_operations` of
/// Rhai's operations per run (the CPU bound), the sizes above (the
/// memory bound: about `MAX_VARIABLES` strings of `MAX_STRING`), no
/// `eval`, no output (`print` and `debug` go nowhere), no modules (the
/// crate is built with `no_module`: `import` does not parse), undeclared
/// variables refused when compiled.
pub fn sandbox(max_operations: u64) -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(max_operations)
        .set_max_string_size(MAX_STRING)
        .set_max_array_size(MAX_ARRAY)
        .set_max_map_size(MAX_MAP)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH)
        .set_max_variables(MAX_VARIABLES)
        .set_max_functions(MAX_FUNCTIONS)
        .set_strict_variables(true)
        .disable_symbol("eval")
        .on_print(|_| {})
        .on_debug(|_, _, _| {});
    e
}

/// A rule's script, compiled (`Config::compile_scripts`); the AST is
/// shared by the engine's threads.
#[derive(Clone, Default)]
pub struct Compiled(pub Option<Arc<AST>>);

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "compiled" } else { "not compiled" })
    }
}

/// Made from `script`, which is compared instead.
impl PartialEq for Compiled {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Compiled {}

/// `text` compiled, or why not: the message and where in `text` (line
/// and column, from 1).
pub fn compile(text: &str) -> Result<AST, (String, usize, usize)> {
    sandbox(1).compile(text).map_err(|e| (e.err_type().to_string(), e.position().line().unwrap_or(1), e.position().position().unwrap_or(1)))
}

/// The byte offset in `file` of `line`:`column` of the script whose
/// TOML string is at `span` (the delimiter and, for a multi-line string,
/// the newline right after it are not the script's). Exact for literal
/// strings; a basic string's escapes shift the column.
pub fn locate(file: &str, span: Range<usize>, line: usize, column: usize) -> usize {
    let end = span.end.min(file.len());
    let raw = file.get(span.start..end).unwrap_or("");
    let multi = raw.starts_with("'''") || raw.starts_with("\"\"\"");
    let mut at = span.start + if multi { 3 } else { 1 };
    let rest = |at: usize| file.get(at..end).unwrap_or("");
    if multi {
        at += [("\r\n", 2), ("\n", 1)].iter().find(|(p, _)| rest(at).starts_with(p)).map_or(0, |(_, n)| *n);
    }
    for _ in 1..line {
        match rest(at).find('\n') {
            Some(i) => at += i + 1,
            None => break,
        }
    }
    at + rest(at).chars().take(column.saturating_sub(1)).take_while(|c| *c != '\n').map(char::len_utf8).sum::<usize>()
}

/// `script` as a TOML string for `render`: a multi-line literal string
/// when that says it exactly (no `'''`, no control character but a tab
/// or a line end, no `'` at its end), else `q`'s basic string.
pub fn render(script: &str, q: &dyn Fn(&str) -> String) -> String {
    let literal = !script.contains("'''") && !script.ends_with('\'') && !script.contains('\r') && script.chars().all(|c| c == '\n' || c == '\t' || !c.is_control());
    if literal {
        format!("'''\n{script}'''")
    } else {
        q(script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_that_does_not_compile_says_where() {
        let (why, line, col) = compile("let a = 1;\nlet b = a +;\n").unwrap_err();
        assert_eq!((line, col), (2, 12), "{why}");
        assert!(compile("import \"x\" as y;").is_err(), "no modules");
        assert!(compile("eval(\"1\")").is_err(), "no eval");
        assert!(compile("undeclared + 1").is_err(), "strict variables");
        assert!(compile("let t = query(\"x\"); if t == \"a\" { \"a\" } else { () }").is_ok());
    }

    /// A configuration with an `http` virtual server whose rules are
    /// `rules`, and pools web, blue, green.
    fn with_rules(rules: &str) -> String {
        let pool = |n: &str, last: u8| format!("[[pool]]\nname = \"{n}\"\nservers = [ {{ address = \"198.51.100.{last}:80\" }} ]\n");
        format!(
            "[platform]\neal_args = [\"--no-huge\"]\ncontrol_lcore = 0\nworker_lcores = [1]\n\n[[interface]]\nname = \"outside\"\ndevice = \"net_af_packet0,iface=lb-out\"\naddress = \"192.0.2.2/24\"\n\n[[interface]]\nname = \"inside\"\ndevice = \"net_af_packet1,iface=lb-in\"\naddress = \"198.51.100.1/24\"\n\n{}{}{}\n[[virtual_server]]\nname = \"site\"\naddress = \"192.0.2.100:80\"\nprotocol = \"http\"\npool = \"web\"\n{rules}",
            pool("web", 11),
            pool("blue", 12),
            pool("green", 13)
        )
    }

    fn refused(rules: &str) -> crate::config::ConfigError {
        crate::config::Config::parse("t.toml", &with_rules(rules)).unwrap_err()
    }

    const TENANTS: &str = r#"
[[virtual_server.rule]]
path_prefix = "/"
script = '''
let t = query("tenant");
if t == "blue" { "blue" } else if t == "green" { "green" } else { () }
'''
pools = ["blue", "green"]
body_bytes = 4096

[[virtual_server.rule]]
script = "method() == \"PUT\"\r\n"
pool = "blue"
"#;

    #[test]
    fn script_rules_compile_and_render_back() {
        let c = crate::config::Config::parse("t.toml", &with_rules(TENANTS)).unwrap_or_else(|e| panic!("{e}"));
        let r = &c.virtual_servers[0].rule;
        assert!(r[0].compiled.0.is_some() && r[1].compiled.0.is_some(), "compiled at load");
        assert_eq!(r[0].pools.as_ref().map(|p| p.get_ref().len()), Some(2));
        let text = crate::config::render(&c);
        assert!(text.contains("script = '''\nlet t = query(\"tenant\");\n"), "a literal string: {text}");
        assert!(text.contains("script_max_operations = 100000"), "{text}");
        let again = crate::config::Config::parse("r.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(crate::config::render(&again), text);
        assert_eq!(again.virtual_servers[0].rule, c.virtual_servers[0].rule);
    }

    #[test]
    fn script_rules_refuse_their_mistakes_with_their_place() {
        let script = "\n[[virtual_server.rule]]\nscript = \"()\"\n";
        for (rules, needle) in [
            (script.to_string(), "needs `pools`"),
            ("\n[[virtual_server.rule]]\npath_prefix = \"/\"\npools = [\"blue\"]\npool = \"blue\"\n".into(), "they need `script`"),
            (format!("{script}pools = [\"blue\", \"red\"]\n"), "names no pool \"red\""),
            (format!("{script}pool = \"red\"\n"), "names no pool \"red\""),
            (format!("{script}pools = [\"blue\"]\nbody_bytes = 262145\n"), "body_bytes 262145 is out of range: allowed 0..=262144"),
            ("\n[[virtual_server.rule]]\npath_prefix = \"/\"\npool = \"blue\"\nbody_bytes = 10\n".into(), "it needs `script`"),
            ("\n[[virtual_server.rule]]\nmethod = \"GET\"\n".into(), "needs `pool`"),
            ("\n[[virtual_server.rule]]\nscript = \"import \\\"m\\\" as m;\"\npools = [\"blue\"]\n".into(), "script:"),
            (format!("{script}pools = [\"blue\"]\n\n[l7]\nscript_max_operations = 0\n"), "script_max_operations 0 is out of range: allowed 1..=10000000"),
        ] {
            let e = refused(&rules);
            assert!(e.message.contains(needle), "{rules}: {e}");
            assert!(e.line > 1, "{rules}: a place: {e}");
        }
    }

    #[test]
    fn a_script_that_does_not_compile_is_refused_at_its_line_and_column() {
        let rules = "\n[[virtual_server.rule]]\npools = [\"blue\"]\nscript = '''\nlet t = query(\"tenant\");\n  let b = t +;\n'''\n";
        let text = with_rules(rules);
        let e = crate::config::Config::parse("t.toml", &text).unwrap_err();
        let line = text.lines().position(|l| l.starts_with("  let b")).unwrap() + 1;
        assert_eq!((e.line, e.column), (line, 14), "{e}");
        assert!(e.message.contains("rule 1: script:") && e.message.contains("(the script's line 2, column 14)"), "{e}");
        assert!(e.to_string().starts_with(&format!("t.toml:{line}:")), "{e}");
    }

    #[test]
    fn positions_map_into_the_file() {
        let file = "[[virtual_server.rule]]\nscript = '''\nlet a = 1;\nlet b = a +;\n'''\n";
        let start = file.find("'''").unwrap();
        let end = file.rfind("'''").unwrap() + 3;
        let at = locate(file, start..end, 2, 12);
        assert_eq!(&file[at..at + 1], ";");
        let one = "script = 'x +'\n";
        let at = locate(one, 9..14, 1, 3);
        assert_eq!(&one[at..at + 1], "+");
    }
}
