#!/usr/bin/env python3
"""Tabulates and charts `workload=unshare-bench` runs: DIR/raw.jsonl (one summary per boot, as
`scripts/bench.sh` writes it) -> DIR/bench.md and DIR/chart.svg.

Each boot measures the three unshare modes on one scenario (CPUs x level-2 tables); the table
has a row per boot and mode, the chart two panels per CPU count (IPIs sent, ticks per
fork+exit) against the table count, log scales, one line per mode. Standard library only.

usage: scripts/unshare_chart.py DIR
"""

import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchrows  # noqa: E402

MODES = ["sync-each", "sync-last", "recheck"]
COLORS = {"sync-each": "#d62728", "sync-last": "#1f77b4", "recheck": "#2ca02c"}


def load(path):
    rows = benchrows.load(path, "unshare-bench", "unshare_chart")
    return rows



def table(rows):
    md = [
        "# unshare-bench",
        "",
        f"Measured at commit {benchrows.commits(rows)}, `scripts/bench.sh`.",
        "",
        "Each row is one boot measuring all three modes on the same scenario: a parent maps a shared",
        "object over N level-2 tables, forks children that exit, then unmaps, with walker CPUs running.",
        "Ticks are CNTVCT under QEMU TCG (not hardware time): compare modes within a row.",
        "",
        "| CPUs | tables | children | mode | ipis_sent | table_syncs | tlbi_ops | dsb_ish | sync_waits | grace_periods | tables_unshared | uaf | ticks/fork+exit | ticks/unmap | time vs sync-last |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = r["bench"]
        base = r["modes"]["sync-last"]["ticks_per_fork_exit"] or 1
        for m in MODES:
            x = r["modes"][m]
            md.append(
                f"| {r['cpus']} | {b['tables']} | {b['children']} | {m} | {x['ipis_sent']} | {x['table_syncs']} | "
                f"{x['tlbi_ops']} | {x['dsb_ish']} | {x['sync_waits']} | {x['grace_periods']} | {x['tables_unshared']} | "
                f"{x['uaf_detected']} | {x['ticks_per_fork_exit']} | {x['ticks_per_unmap']} | "
                f"{x['ticks_per_fork_exit'] / base:.2f}x |"
            )
    return "\n".join(md) + "\n"


def chart(rows):
    """For each CPU count, two panels (IPIs per run, ticks per fork+exit), log y."""
    cpus = sorted({r["cpus"] for r in rows})
    W, H, PW, PH, L, T = 1080, 80 + 300 * len(cpus), 400, 220, 90, 70
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="16">unshare-bench at {benchrows.commits(rows)}: '
        f'{rows[0]["bench"]["children"]} children fork and exit over N shared level-2 tables (QEMU TCG ticks; log scales)</text>',
    ]

    def panel(x0, y0, title, series, ylabel):
        pts = [v for s in series.values() for (_, v) in s]
        xs = sorted({x for s in series.values() for (x, _) in s})
        if not xs:
            return
        lo, hi = 0, math.log10(max(max(pts), 1)) + 0.3

        def px(x):
            if len(xs) == 1:
                return x0
            return x0 + (math.log2(x) - math.log2(xs[0])) / (math.log2(xs[-1]) - math.log2(xs[0])) * PW

        def py(v):
            return y0 + PH - (math.log10(max(v, 1)) - lo) / (hi - lo) * PH

        svg.append(f'<text x="{x0 + PW / 2}" y="{y0 - 8}" text-anchor="middle">{title}</text>')
        svg.append(f'<rect x="{x0}" y="{y0}" width="{PW}" height="{PH}" fill="none" stroke="#888"/>')
        for e in range(0, int(hi) + 1):
            y = py(10**e)
            svg.append(
                f'<line x1="{x0}" y1="{y}" x2="{x0 + PW}" y2="{y}" stroke="#eee"/>'
                f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">1e{e}</text>'
            )
        for x in xs:
            svg.append(f'<text x="{px(x)}" y="{y0 + PH + 16}" text-anchor="middle">{x}</text>')
        svg.append(f'<text x="{x0 + PW / 2}" y="{y0 + PH + 32}" text-anchor="middle">level-2 tables</text>')
        svg.append(
            f'<text x="{x0 - 52}" y="{y0 + PH / 2}" transform="rotate(-90 {x0 - 52} {y0 + PH / 2})" '
            f'text-anchor="middle">{ylabel}</text>'
        )
        for m, s in series.items():
            s = sorted(s)
            d = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(v):.1f}" for i, (x, v) in enumerate(s))
            svg.append(f'<path d="{d}" fill="none" stroke="{COLORS[m]}" stroke-width="2"/>')
            for x, v in s:
                svg.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="{COLORS[m]}"/>')

    for i, n in enumerate(cpus):
        y0 = T + 20 + i * 300
        sub = [r for r in rows if r["cpus"] == n]
        ipis = {m: [(r["bench"]["tables"], r["modes"][m]["ipis_sent"] + 1) for r in sub] for m in MODES}
        ticks = {m: [(r["bench"]["tables"], r["modes"][m]["ticks_per_fork_exit"]) for r in sub] for m in MODES}
        panel(L, y0, f"{n} CPUs: IPIs sent in the whole run, plus one", ipis, "IPIs + 1")
        panel(L + PW + 100, y0, f"{n} CPUs: CNTVCT ticks per fork+exit", ticks, "ticks")
    for j, m in enumerate(MODES):
        lx = L + j * 140
        svg.append(
            f'<rect x="{lx}" y="44" width="14" height="4" fill="{COLORS[m]}"/><text x="{lx + 20}" y="50">{m}</text>'
        )
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/unshare_chart.py DIR")
    out = sys.argv[1]
    rows = load(f"{out}/raw.jsonl")
    open(f"{out}/bench.md", "w").write(table(rows))
    open(f"{out}/chart.svg", "w").write(chart(rows))


if __name__ == "__main__":
    main()
