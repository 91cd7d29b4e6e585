#!/usr/bin/env python3
"""Tabulates and charts `workload=scale-bench` runs: DIR/raw.jsonl (one summary per boot, as
`scripts/bench.sh --scale` writes it) -> DIR/scale.md and DIR/scale.svg.

The chart has one panel per per-op figure (ipis_sent_per_op, tlbi_ops_per_op, dsb_ish_per_op,
sync_waits_per_op, ticks_per_op) against the CPU count on a log2 axis, one line per strategy.
Panels whose values span more than a factor of 20 use a log y axis (of value + 1, so that 0
can be drawn), the others a linear one. Standard library only.

usage: scripts/scale_chart.py DIR
"""

import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchrows  # noqa: E402

STRATEGIES = ["tlbi", "ipi", "sync-each", "sync-last", "recheck"]
COLORS = {
    "tlbi": "#2ca02c",
    "ipi": "#d62728",
    "sync-each": "#ff7f0e",
    "sync-last": "#1f77b4",
    "recheck": "#9467bd",
}
# recheck runs tlbi's configuration: its line lies on tlbi's, so it is dashed to stay visible.
DASH = {"recheck": "6,4"}
FIGURES = [
    "ipis_sent_per_op",
    "tlbi_ops_per_op",
    "dsb_ish_per_op",
    "sync_waits_per_op",
    "ticks_per_op",
]


def load(path):
    rows = benchrows.load(path, "scale-bench", "scale_chart")
    return sorted(rows, key=lambda r: r["cpus"])


def clock_note(rows):
    """What a tick is in these runs: host time, or virtual time under `-icount`."""
    clocks = {r.get("clock", "host") for r in rows}
    if len(clocks) == 1 and next(iter(clocks)).startswith("icount"):
        return (
            f"Ticks are CNTVCT under QEMU `-icount` ({next(iter(clocks))}, `bench.sh --scale "
            "--deterministic`): virtual time, a fixed number of instructions executed by the whole "
            "machine, the same on every run; not hardware time. `wall s` is the boot's QEMU wall time."
        )
    return (
        "Ticks are CNTVCT under QEMU TCG on the host's cores, not hardware time; `wall s` is the "
        "whole boot's QEMU wall time."
    )



def table(rows):
    md = [
        "# scale-bench",
        "",
        f"Measured at commit {benchrows.commits(rows)}.",
        "",
        "One op = protect 512 pages, unmap them (freeing 3 tables), fork+exit over 4 shared",
        "level-2 tables, in a space that ran on every CPU; the other CPUs idle. Counts are exact",
        "(totals over 8 ops / 8). " + clock_note(rows),
        "",
        "| CPUs | strategy | ipis_sent_per_op | tlbi_ops_per_op | dsb_ish_per_op | sync_waits_per_op | ticks_per_op | ticks vs tlbi | wall s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = r["modes"]["tlbi"]["ticks_per_op"] or 1
        for m in STRATEGIES:
            x = r["modes"][m]
            md.append(
                f"| {r['cpus']} | {m} | {x['ipis_sent_per_op']} | {x['tlbi_ops_per_op']} | "
                f"{x['dsb_ish_per_op']} | {x['sync_waits_per_op']} | {x['ticks_per_op']} | "
                f"{x['ticks_per_op'] / base:.2f}x | {r.get('wall_s', '')} |"
            )
    return "\n".join(md) + "\n"


def chart(rows):
    cpus = [r["cpus"] for r in rows]
    clock = ", ".join(sorted({r.get("clock", "host") for r in rows}))
    PW, PH, L, T, GAP = 420, 240, 90, 90, 110
    cols = 2
    nrows = math.ceil(len(FIGURES) / cols)
    W = L + cols * (PW + GAP)
    H = T + nrows * (PH + GAP)
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="16">scale-bench at {benchrows.commits(rows)}: cost per op against CPU count, one line per strategy (QEMU TCG, clock: {clock}; ticks are not hardware time)</text>',
    ]
    for j, m in enumerate(STRATEGIES):
        lx = L + j * 150
        dash = f' stroke-dasharray="{DASH[m]}"' if m in DASH else ""
        svg.append(
            f'<line x1="{lx}" y1="48" x2="{lx + 24}" y2="48" stroke="{COLORS[m]}" stroke-width="3"{dash}/>'
            f'<text x="{lx + 30}" y="52">{m}</text>'
        )
    lo2, hi2 = math.log2(min(cpus)), math.log2(max(cpus))

    def px(x0, n):
        return x0 + (0 if hi2 == lo2 else (math.log2(n) - lo2) / (hi2 - lo2) * PW)

    for i, fig in enumerate(FIGURES):
        x0 = L + (i % cols) * (PW + GAP)
        y0 = T + (i // cols) * (PH + GAP)
        vals = [r["modes"][m][fig] for r in rows for m in STRATEGIES]
        vmax = max(vals)
        vmin = min(vals)
        logy = vmax + 1 > 20 * (vmin + 1)
        if logy:
            top = math.log10(vmax + 1) * 1.05 or 1

            def py(v):
                return y0 + PH - math.log10(v + 1) / top * PH

            ticks = [(10**e - 1, f"1e{e}" if e else "0") for e in range(0, int(top) + 1)]
            ylabel = f"{fig} (log, +1)"
        else:
            top = vmax * 1.1 or 1

            def py(v):
                return y0 + PH - v / top * PH

            step = max(1, math.ceil(top / 5))
            ticks = [(v, str(v)) for v in range(0, int(top) + 1, step)]
            ylabel = fig
        svg.append(f'<text x="{x0 + PW / 2}" y="{y0 - 10}" text-anchor="middle" font-size="13">{fig}</text>')
        svg.append(f'<rect x="{x0}" y="{y0}" width="{PW}" height="{PH}" fill="none" stroke="#888"/>')
        for v, label in ticks:
            y = py(v)
            svg.append(
                f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + PW}" y2="{y:.1f}" stroke="#eee"/>'
                f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
            )
        for n in cpus:
            svg.append(f'<text x="{px(x0, n):.1f}" y="{y0 + PH + 16}" text-anchor="middle">{n}</text>')
        svg.append(f'<text x="{x0 + PW / 2}" y="{y0 + PH + 34}" text-anchor="middle">CPUs (log2)</text>')
        svg.append(
            f'<text x="{x0 - 60}" y="{y0 + PH / 2}" transform="rotate(-90 {x0 - 60} {y0 + PH / 2})" text-anchor="middle">{ylabel}</text>'
        )
        for m in STRATEGIES:
            pts = [(r["cpus"], r["modes"][m][fig]) for r in rows]
            d = " ".join(
                f"{'M' if k == 0 else 'L'}{px(x0, n):.1f},{py(v):.1f}" for k, (n, v) in enumerate(pts)
            )
            dash = f' stroke-dasharray="{DASH[m]}"' if m in DASH else ""
            svg.append(f'<path d="{d}" fill="none" stroke="{COLORS[m]}" stroke-width="2"{dash}/>')
            for n, v in pts:
                svg.append(f'<circle cx="{px(x0, n):.1f}" cy="{py(v):.1f}" r="3" fill="{COLORS[m]}"/>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    out = sys.argv[1]
    rows = load(f"{out}/raw.jsonl")
    open(f"{out}/scale.md", "w").write(table(rows))
    open(f"{out}/scale.svg", "w").write(chart(rows))


if __name__ == "__main__":
    main()
