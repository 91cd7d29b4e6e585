"""What the bench chart scripts share: reading one bench's summaries from a raw.jsonl (one per
boot, as scripts/bench.sh writes them) and naming the commit they were measured at."""

import json
import sys


def load(path, workload, who):
    """The summaries of `workload` in `path`; exits with `who`'s message when there is none."""
    rows = [json.loads(line) for line in open(path) if line.strip()]
    rows = [r for r in rows if r.get("workload") == workload]
    if not rows:
        sys.exit(f"{who}: no {workload} summaries in {path}")
    return rows


def commits(rows):
    """The commit(s) the rows were measured at (bench.sh stamps each boot's line)."""
    return ", ".join(sorted({r.get("commit", "unknown") for r in rows}))
