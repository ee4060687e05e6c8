#!/usr/bin/env python3
"""The structure rules of docs/architecture.md, checked on the source tree:

1. No module cycle inside a crate: between the child modules of any one
   module, the `use` references (crate::..., super::..., self::...) form a
   directed graph with no cycle. A child using its parent's items is not an
   edge (it is part of its parent); test code (tests.rs files, #[cfg(test)]
   modules) is left out.
2. No `#[path = ...]` attribute.
3. No non-test source file above 600 lines (a file's #[cfg(test)] module at
   its end does not count).

Prints what breaks a rule and exits 1, or prints a summary and exits 0.
"""
import os
import re
import sys

CRATES = ["ffi/src", "platform/src", "dataplane/src", "controlplane/src", "bench/src"]
MAX_LINES = 600

def module_path(src_root, path):
    rel = os.path.relpath(path, src_root)[:-3].split(os.sep)
    if rel[-1] in ("lib", "main", "mod"):
        rel = rel[:-1]
    return tuple(rel)

# One left-to-right pass over what hides code: comments, raw strings
# (r"..", r#".."#, br".."), strings, byte and C strings, char literals
# ('"' would open a string otherwise). An `r` that ends a word or follows
# a backslash (`"virtual_server"`, `b"\r"`) is inside a literal already,
# which the pass has consumed by then.
LITERALS = re.compile(
    r"//[^\n]*"
    r"|/\*.*?\*/"
    r"|(?<![A-Za-z0-9_])[bc]?r(?P<h>#*)\"(?:.|\n)*?\"(?P=h)"
    r"|(?<![A-Za-z0-9_])[bc]?\"(?:\\.|[^\"\\])*\""
    r"|'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^'\\])'",
    re.S,
)

def strip(text):
    """Code without comments, strings and test modules."""
    cut = re.search(r"^#\[cfg\((all\()?test[^\]]*\]\s*\n\s*(pub(\([a-z]+\))? )?mod \w+\s*[{;]", text, re.M)
    if cut:
        text = text[: cut.start()]
    return LITERALS.sub(lambda m: "" if m.group(0).startswith("/") else '""', text)

def code_lines(text):
    cut = re.search(r"^#\[cfg\((all\()?test[^\]]*\]\s*\n\s*(pub(\([a-z]+\))? )?mod \w+\s*\{", text, re.M)
    return text[: cut.start()].count("\n") if cut else text.count("\n")

def references(mod, text):
    """Module paths (tuples) this module's code names."""
    refs = set()
    # use crate::a::{b, c::d} and inline crate::a::b paths
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)+)", text):
        head, rest = m.group(1), [p for p in m.group(2).split("::") if p]
        if head == "crate":
            base = ()
        elif head == "super":
            base = mod[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        else:
            base = mod
        refs.add(base + tuple(rest))
    # use crate::x::{a, b::c}: the braces' first segments
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)*)::\{([^;]*)\}", text):
        head, pre = m.group(1), [p for p in m.group(2).split("::") if p]
        base = () if head == "crate" else (mod[:-1] if head == "super" else mod)
        for item in re.split(r",", m.group(3)):
            first = item.strip().split("::")[0].strip("{} ")
            if re.fullmatch(r"\w+", first or "") and first != "self":
                refs.add(base + tuple(pre) + (first,))
    return refs

def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    problems = []
    modules = 0
    for crate in CRATES:
        src = os.path.join(root, crate)
        if not os.path.isdir(src):
            continue
        files = {}
        for d, _, names in os.walk(src):
            for n in names:
                if n.endswith(".rs"):
                    p = os.path.join(d, n)
                    files[module_path(src, p)] = p
        known = set(files)
        # Inline modules (mod x { ... }) are part of their file: close enough.
        edges = {}
        for mod, path in files.items():
            text = open(path, encoding="utf-8").read()
            if re.search(r"#\[path\s*=", text):
                problems.append(f"{path}: #[path] attribute")
            if os.path.basename(path) != "tests.rs" and "fuzz" not in path and code_lines(text) > MAX_LINES:
                problems.append(f"{path}: {code_lines(text)} lines of non-test code (at most {MAX_LINES})")
            if os.path.basename(path) == "tests.rs":
                continue
            modules += 1
            for ref in references(mod, strip(text)):
                # The longest known module the reference names.
                target = ref
                while target and target not in known:
                    target = target[:-1]
                # Edge between the children of the common ancestor.
                c = 0
                while c < min(len(mod), len(target)) and mod[c] == target[c]:
                    c += 1
                if c < len(mod) and c < len(target):
                    edges.setdefault(mod[: c + 1], set()).add(target[: c + 1])
        # Cycles among siblings.
        seen, stack, on = set(), [], set()
        def visit(n):
            seen.add(n)
            on.add(n)
            stack.append(n)
            for m in sorted(edges.get(n, ())):
                if m in on:
                    cyc = stack[stack.index(m):] + [m]
                    problems.append(f"{crate}: module cycle " + " -> ".join("::".join(x) or "crate" for x in cyc))
                elif m not in seen:
                    visit(m)
            stack.pop()
            on.discard(n)
        for n in sorted(edges):
            if n not in seen:
                visit(n)
    for p in problems:
        print(p)
    if problems:
        print(f"check-structure: {len(problems)} problem(s)")
        return 1
    print(f"check-structure: {modules} modules, no cycle, no #[path], no file over {MAX_LINES} lines")
    return 0

if __name__ == "__main__":
    sys.exit(main())
