#!/usr/bin/env python3
"""Checks the shape issue 10 asks of `src/`: file and function sizes, module dependencies.

Usage: scripts/sizes.py [--max-file 600] [--max-fn 120] [--all] [SRC_DIR]

Reports
- every file in SRC_DIR (default: the crate's `src/`) over --max-file lines;
- every function over --max-fn lines (signature to closing brace; the code is rustfmt'ed, so
  a function ends at the first `}` at its own indentation);
- the dependencies between top-level modules (`crate::x` paths outside test code), any cycle
  among them, and whether `execute` uses `journal` or `cli`.
With --all, also lists the ten largest files and functions. Exits 1 when anything is over a
limit or a rule is broken, so a test can run it.
"""
import os
import re
import sys

FN = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?((const|async|unsafe|extern\s+\"[^\"]*\")\s+)*fn\s+(\w+)")


def rust_files(src):
    for dirpath, _, names in os.walk(src):
        for n in sorted(names):
            if n.endswith(".rs"):
                yield os.path.join(dirpath, n)


def functions(lines):
    """(name, first line, length) of every function with a body."""
    out = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        indent = m.group(1)
        # the signature ends at the first line ending in `{` (a body) or `;` (a declaration)
        j = i
        while j < len(lines) and not lines[j].rstrip().endswith(("{", ";")):
            j += 1
        if j >= len(lines) or lines[j].rstrip().endswith(";"):
            continue
        if lines[j].rstrip().endswith("}"):  # `fn f() {}` on one line
            continue
        close = indent + "}"
        k = j + 1
        while k < len(lines) and lines[k].rstrip() != close:
            k += 1
        out.append((m.group(6), i + 1, k - i + 1))
    return out


def is_test_file(path):
    base = os.path.basename(path)
    return base == "tests.rs" or base.endswith("_tests.rs")


def module_of(src, path):
    rel = os.path.relpath(path, src)
    top = rel.split(os.sep)[0]
    return top[:-3] if top.endswith(".rs") else top


def deps(src, files):
    """Top-level module → the top-level modules it uses (test code left out)."""
    graph = {}
    for path, lines in files.items():
        if is_test_file(path):
            continue
        me = module_of(src, path)
        if me in ("lib", "main"):
            continue
        uses = graph.setdefault(me, set())
        for line in lines:
            if line.startswith("#[cfg(test)]"):
                break  # the unit tests at the end of a file
            s = line.strip()
            if s.startswith("//"):
                continue
            for m in re.finditer(r"\bcrate::(\w+)", s):
                if m.group(1) != me:
                    uses.add(m.group(1))
        # multi-line `use crate::{a, b::c}` groups
        text = "\n".join(lines)
        for m in re.finditer(r"use crate::\{([^;]*)\};", text):
            for part in re.findall(r"(?:^|[,{]\s*)(\w+)", m.group(1)):
                if part != me:
                    uses.add(part)
    mods = set(graph)
    return {m: {u for u in us if u in mods} for m, us in graph.items()}


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv):
    max_file, max_fn, show_all = 600, 120, False
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--max-file":
            max_file = int(args.pop(0))
        elif a == "--max-fn":
            max_fn = int(args.pop(0))
        elif a == "--all":
            show_all = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            src = a
    files = {}
    for p in rust_files(src):
        with open(p, encoding="utf-8") as f:
            files[p] = f.read().split("\n")
    sizes = sorted(((len(ls) - (ls[-1] == ""), p) for p, ls in files.items()), reverse=True)
    fns = sorted(
        ((n, os.path.relpath(p, src), name, line) for p, ls in files.items()
         for name, line, n in functions(ls)),
        reverse=True,
    )
    bad = 0
    big_files = [(n, p) for n, p in sizes if n > max_file]
    print(f"files over {max_file} lines: {len(big_files)}")
    for n, p in big_files:
        print(f"  {n:5}  {os.path.relpath(p, src)}")
    big_fns = [f for f in fns if f[0] > max_fn]
    print(f"functions over {max_fn} lines: {len(big_fns)}")
    for n, p, name, line in big_fns:
        print(f"  {n:5}  {p}:{line} {name}")
    bad += len(big_files) + len(big_fns)
    if show_all:
        print("largest files:")
        for n, p in sizes[:10]:
            print(f"  {n:5}  {os.path.relpath(p, src)}")
        print("largest functions:")
        for n, p, name, line in fns[:10]:
            print(f"  {n:5}  {p}:{line} {name}")
    graph = deps(src, files)
    cyc = cycles(graph)
    print(f"import cycles between top-level modules: {len(cyc)}")
    for c in cyc:
        print("  " + " <-> ".join(c))
    bad += len(cyc)
    forbidden = sorted(graph.get("execute", set()) & {"journal", "cli"})
    print(f"execute uses journal or cli: {', '.join(forbidden) if forbidden else 'no'}")
    bad += len(forbidden)
    if show_all:
        print("module dependencies:")
        for m in sorted(graph):
            print(f"  {m:12} -> {', '.join(sorted(graph[m])) or '-'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
