#!/usr/bin/env python3
"""Checks that the engine's modules form layers: no include cycles.

A module is x.c with x.h (and x_internal.h, the same module's private
header); a .c file that includes x_internal.h implements part of module x
(conn_io.c of server, cluster_link.c of cluster, redis_pubsub.c of redis:
what x.h declares may be defined there), so it counts as module x.
c_src/*.c, c_src/*.h and include/kraken/*.h are read.  Module a
depends on module b when one of a's files has `#include "b.h"` (or
"b_internal.h", "kraken/b.h").  Any cycle between two different modules
(a -> b -> a, or longer: a -> b -> c -> a) fails the check: each one is
printed as a path, with the include lines that make its arrows, and the
script exits 1.  docs/architecture.md ("Layers") says which layer may
include which; `make test` runs this first (`make test-lint`).

    usage: include_cycles.py [ROOT]     (ROOT: the repository, default ..)
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
MAX_CYCLES = 200  # printed at most; a tangle beyond that is one message anyway


def module_of(path):
    name = os.path.splitext(os.path.basename(path))[0]
    return name[:-len("_internal")] if name.endswith("_internal") else name


def read_graph(root):
    """{module: {module: [(file, line_no, included)]}} from the sources."""
    files = []
    for sub, exts in (("c_src", (".c", ".h")), ("include/kraken", (".h",))):
        d = os.path.join(root, sub)
        for f in sorted(os.listdir(d)):
            if f.endswith(exts):
                files.append(os.path.join(sub, f))
    headers = {f for f in files if f.endswith(".h")}
    includes = {}
    for f in files:
        includes[f] = []
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            for no, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if m and (("c_src/" + m.group(1)) in headers or ("include/" + m.group(1)) in headers):
                    includes[f].append((no, m.group(1)))  # one of the engine's headers
    owner = {}
    for f in files:
        owner[f] = module_of(f)
        if f.endswith(".c"):
            private = [module_of(inc) for _, inc in includes[f]
                       if inc.endswith("_internal.h")]
            if len(set(private)) > 1:
                sys.exit("include_cycles: %s includes the private headers of %s: one module only"
                         % (f, " and ".join(sorted(set(private)))))
            if private:
                owner[f] = private[0]
    graph = {m: {} for m in owner.values()}
    for f in files:
        a = owner[f]
        for no, inc in includes[f]:
            b = module_of(inc)
            if b != a:
                graph[a].setdefault(b, []).append((f, no, inc))
    return graph


def sccs(graph):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop(); on.discard(w); comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def cycles_in(graph, comp):
    """The elementary cycles of one component, each from its least module
    (so each is found once), shortest first; at most MAX_CYCLES."""
    found = []
    members = set(comp)
    for start in comp:
        allowed = {m for m in members if m >= start}
        path = [start]
        def walk(v):
            for w in sorted(graph[v]):
                if len(found) >= MAX_CYCLES:
                    return
                if w == start:
                    found.append(path + [start])
                elif w in allowed and w not in path:
                    path.append(w); walk(w); path.pop()
        walk(start)
    return sorted(found, key=lambda c: (len(c), c))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    graph = read_graph(root)
    bad = [c for c in sccs(graph) if len(c) > 1]
    if not bad:
        print("include_cycles: %d modules, no include cycles" % len(graph))
        return 0
    n = 0
    for comp in bad:
        print("include_cycles: modules that depend on each other: %s" % " ".join(comp))
        for cyc in cycles_in(graph, comp):
            n += 1
            print("  cycle: %s" % " -> ".join(cyc))
            for a, b in zip(cyc, cyc[1:]):
                for f, no, inc in graph[a][b]:
                    print("    %s:%d: #include \"%s\"" % (f, no, inc))
    print("include_cycles: FAILED: %d cycle(s) between modules (docs/architecture.md, \"Layers\")" % n)
    return 1


if __name__ == "__main__":
    sys.exit(main())
