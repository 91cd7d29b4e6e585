#!/usr/bin/env python3
"""Writes every benchmark table and chart in docs/ from the raw data kept beside them.

docs/data/NAME.jsonl holds the summaries (one per boot, stamped with the commit, the clock and
the wall time) of the run each published figure comes from; `scripts/bench.sh --docs` measures
them all again from the current build and then runs this. From them it writes:

- docs/unshare-bench.{md,svg}, docs/scale-bench.{md,svg}, docs/scale-bench-icount.{md,svg} and
  docs/flush-bench.{md,svg}, with the bench's own chart script;
- the extracts quoted in docs/benchmarks.md, each between `<!-- figure: NAME -->` and
  `<!-- /figure -->`, each naming the commit it was measured at.

With --check it writes nothing and exits 1 if any of those files differs from what the data
gives (a test runs it: a published figure edited by hand, or data without its figure, fails).
Standard library only.

usage: scripts/bench_docs.py [--check] [DOCS_DIR]   (default: docs/ beside scripts/)
"""

import importlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "lib"))
import benchrows  # noqa: E402

# (data file stem, chart module, the command that measures it, published file stem)
BENCHES = [
    ("unshare", "unshare_chart", "scripts/bench.sh", "unshare-bench"),
    ("scale", "scale_chart", "scripts/bench.sh --scale", "scale-bench"),
    ("scale-icount", "scale_chart", "scripts/bench.sh --scale --deterministic", "scale-bench-icount"),
    ("flush", "flush_chart", "scripts/bench.sh --flush", "flush-bench"),
]
COMMAND = {data: cmd for data, _, cmd, _ in BENCHES}
BLOCK = re.compile(r"(<!-- figure: ([a-z-]+) -->\n)(.*?)(<!-- /figure -->)", re.S)


def measured(name, rows):
    clocks = ", ".join(sorted({r.get("clock", "host") for r in rows}))
    return f"Measured at commit {benchrows.commits(rows)} (`{COMMAND[name]}`, clock: {clocks}; not hardware time):"


def unshare_extract(rows):
    n = max(r["cpus"] for r in rows)
    out = [
        measured("unshare", rows) + f" at {n} CPUs,",
        "",
        "| tables | mode | ipis_sent | table_syncs | tlbi_ops | ticks per fork+exit | vs sync-last |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted((r for r in rows if r["cpus"] == n), key=lambda r: r["bench"]["tables"]):
        base = r["modes"]["sync-last"]["ticks_per_fork_exit"] or 1
        for m in ["sync-each", "sync-last", "recheck"]:
            x = r["modes"][m]
            out.append(
                f"| {r['bench']['tables']} | {m} | {x['ipis_sent']} | {x['table_syncs']} | {x['tlbi_ops']} | "
                f"{x['ticks_per_fork_exit']} | {x['ticks_per_fork_exit'] / base:.2f}x |"
            )
    return out


def scale_extract(rows):
    out = [
        measured("scale", rows),
        "",
        "| CPUs | strategy | IPIs/op | TLBIs/op | DSB ISH/op | sync waits/op | ticks/op | vs tlbi |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["cpus"] not in (16, 128, 512):
            continue
        base = r["modes"]["tlbi"]["ticks_per_op"] or 1
        for m in ["tlbi", "ipi", "sync-each", "sync-last"]:
            x = r["modes"][m]
            out.append(
                f"| {r['cpus']} | {m} | {x['ipis_sent_per_op']} | {x['tlbi_ops_per_op']} | {x['dsb_ish_per_op']} | "
                f"{x['sync_waits_per_op']} | {x['ticks_per_op']} | {x['ticks_per_op'] / base:.2f}x |"
            )
    spread = [r["modes"]["recheck"]["ticks_per_op"] / (r["modes"]["tlbi"]["ticks_per_op"] or 1) for r in rows]
    wall = sum(r.get("wall_s", 0) for r in rows)
    out += [
        "",
        f"`recheck`, the same configuration as `tlbi`, landed at {min(spread):.2f}-{max(spread):.2f}x of it; "
        f"the sweep took {wall} s of wall time.",
    ]
    return out


def scale_icount_extract(rows):
    out = [
        measured("scale-icount", rows),
        "",
        "| CPUs | `tlbi` ticks/op | `ipi` vs `tlbi` | `sync-each` vs `tlbi` | `sync-last` vs `tlbi` |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["cpus"] not in (1, 16, 64, 128, 512):
            continue
        base = r["modes"]["tlbi"]["ticks_per_op"] or 1
        ratios = " | ".join(f"{r['modes'][m]['ticks_per_op'] / base:.2f}x" for m in ["ipi", "sync-each", "sync-last"])
        out.append(f"| {r['cpus']} | {base} | {ratios} |")
    first, last = rows[0], rows[-1]
    growth = last["modes"]["tlbi"]["ticks_per_op"] / (first["modes"]["tlbi"]["ticks_per_op"] or 1)
    spread = [abs(r["modes"]["recheck"]["ticks_per_op"] / (r["modes"]["tlbi"]["ticks_per_op"] or 1) - 1) for r in rows]
    wall = sum(r.get("wall_s", 0) for r in rows)
    out += [
        "",
        f"`tlbi` at {last['cpus']} CPUs costs {growth:.3f}x its cost at {first['cpus']}; `recheck` lands within "
        f"{max(spread) * 100:.1f}% of `tlbi`; the sweep took {wall} s of wall time "
        f"({last.get('wall_s', 0)} s of it the {last['cpus']}-CPU boot).",
    ]
    return out


def flush_extract(rows):
    cpus = ", ".join(str(r["cpus"]) for r in rows)
    out = [
        measured("flush", rows),
        "",
        f"| feature | path | TLBIs/op | DSB ISH/op | IPIs/op | ticks/op at {cpus} CPUs | new/old |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    flush_chart = importlib.import_module("flush_chart")
    for f in flush_chart.FEATURES:
        for path in ["old", "new"]:
            ms = [r["modes"][f"{f}-{path}"] for r in rows]
            counts = []
            for k in ["tlbi_ops_per_op", "dsb_ish_per_op", "ipis_sent_per_op"]:
                vals = sorted({m[k] for m in ms})
                counts.append("/".join(str(v) for v in vals))
            ticks = ", ".join(str(m["ticks_per_op"]) for m in ms)
            ratio = ""
            if path == "new":
                rs = [r["modes"][f"{f}-new"]["ticks_per_op"] / (r["modes"][f"{f}-old"]["ticks_per_op"] or 1) for r in rows]
                lo, hi = f"{min(rs):.2f}", f"{max(rs):.2f}"
                ratio = lo if lo == hi else f"{lo}-{hi}"
            out.append(f"| {f} | {path} | {' | '.join(counts)} | {ticks} | {ratio} |")
    return out


EXTRACTS = {
    "unshare": unshare_extract,
    "scale": scale_extract,
    "scale-icount": scale_icount_extract,
    "flush": flush_extract,
}


def render(docs):
    """Every file this writes: {path: text}."""
    files = {}
    rows_of = {}
    for data, module, _, stem in BENCHES:
        mod = importlib.import_module(module)
        path = os.path.join(docs, "data", f"{data}.jsonl")
        if not os.path.exists(path):
            sys.exit(f"bench_docs: {path} is missing: `scripts/bench.sh --docs` measures it")
        rows = mod.load(path)
        rows_of[data] = rows
        files[os.path.join(docs, f"{stem}.md")] = mod.table(rows)
        files[os.path.join(docs, f"{stem}.svg")] = mod.chart(rows)
    bench_md = os.path.join(docs, "benchmarks.md")
    text = open(bench_md).read()
    seen = set()

    def block(m):
        name = m.group(2)
        if name not in EXTRACTS:
            sys.exit(f"bench_docs: {bench_md}: unknown figure {name!r} (known: {', '.join(EXTRACTS)})")
        seen.add(name)
        return m.group(1) + "\n".join(EXTRACTS[name](rows_of[name])) + "\n" + m.group(4)

    text = BLOCK.sub(block, text)
    missing = set(EXTRACTS) - seen
    if missing:
        sys.exit(f"bench_docs: {bench_md} quotes no figure {', '.join(sorted(missing))}")
    files[bench_md] = text
    return files


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        sys.exit("usage: scripts/bench_docs.py [--check] [DOCS_DIR]")
    docs = args[0] if args else os.path.join(HERE, "..", "docs")
    files = render(docs)
    if check:
        stale = [p for p, t in files.items() if not os.path.exists(p) or open(p).read() != t]
        if stale:
            print("bench_docs: not what docs/data gives (run scripts/bench_docs.py, or bench.sh --docs):")
            for p in stale:
                print(f"  {os.path.relpath(p)}")
            sys.exit(1)
        print(f"bench_docs: {len(files)} files are what docs/data gives")
        return
    for p, t in files.items():
        open(p, "w").write(t)
        print(f"bench_docs: wrote {os.path.relpath(p)}")


if __name__ == "__main__":
    main()
