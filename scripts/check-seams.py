#!/usr/bin/env python3
"""The layout's two rules, checked (run by `make lint`, so by `make test`):

1. No branch on the backend kind outside crates/db/src/backend/: naming a
   variant of BackendKind, BackendState, Handle or Software is the backend
   modules' business. Integration tests may name a backend to run a case on.
2. No import cycle between the files of crates/db or crates/drill: a file's
   dependencies are the `crate::x` modules it names.

Prints each violation and exits 1, or prints a one-line summary.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VARIANTS = re.compile(
    r"\b(BackendKind::(Process|Container)|BackendState::\w+|Handle::(Process|Container)|Software::(Dist|Image))\b"
)


def rust_files(d):
    for base, _, files in os.walk(d):
        for f in files:
            if f.endswith(".rs"):
                yield os.path.join(base, f)


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def kind_branches():
    bad = []
    backend_dir = os.path.normpath(os.path.join(ROOT, "crates/db/src/backend"))
    for path in rust_files(os.path.join(ROOT, "crates")):
        p = os.path.normpath(path)
        if p.startswith(backend_dir) or "/tests/" in p:
            continue
        text = strip_comments(open(path).read())
        # Unit tests inside a file may name kinds too (they check conversions).
        text = text.split("#[cfg(test)]")[0]
        for i, line in enumerate(text.splitlines(), 1):
            m = VARIANTS.search(line)
            if m:
                bad.append(f"{os.path.relpath(path, ROOT)}:{i}: names {m.group(1)} outside the backend modules")
    return bad


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("lib", "mod"):
        parts = parts[:-1]
    return "::".join(parts)


def cycles(crate):
    src = os.path.join(ROOT, crate, "src")
    mods = {}
    for path in rust_files(src):
        mods[module_of(src, path)] = strip_comments(open(path).read()).split("#[cfg(test)]")[0]
    names = set(mods)
    graph = {}
    for m, text in mods.items():
        deps = set()
        for ref in re.findall(r"crate::([a-z_]+(?:::[a-z_]+)*)", text):
            parts = ref.split("::")
            # the longest prefix that is a module (crate::backend::process::x -> backend::process)
            for k in range(len(parts), 0, -1):
                cand = "::".join(parts[:k])
                if cand in names:
                    deps.add(cand)
                    break
        # `use super::x` inside a nested module
        if "::" in m:
            parent = m.rsplit("::", 1)[0]
            for ref in re.findall(r"\bsuper::([a-z_]+)", text):
                cand = f"{parent}::{ref}"
                if cand in names:
                    deps.add(cand)
        deps.discard(m)
        # A module depends on its own children (they are declared in it):
        # only sibling and outside edges make cycles.
        graph[m] = {d for d in deps if not d.startswith(m + "::") and not (m == "" and d)}
    found = []
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            # a child using its parent (super::) is how Rust modules nest
            if n.startswith(d + "::") or d == "":
                continue
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return [f"{crate}: import cycle " + " -> ".join(c) for c in found]


def main():
    bad = kind_branches()
    for crate in ("crates/db", "crates/drill"):
        bad += cycles(crate)
    for b in bad:
        print(b)
    if bad:
        sys.exit(1)
    print("seams: no backend-kind branch outside crates/db/src/backend, no import cycle in db or drill")


if __name__ == "__main__":
    main()
