"""Soak: the uplink fault scenarios of tests/integration/test_faults.py (their harness:
tests/support/faults.py), longer, with more kills and a seeded random mix of faults, until the
time is up.

    python -m tests.soak --minutes 10 --seed 1        (or: make soak MINUTES=10 SEED=1)

Every scenario runs once in a random order, then random ones follow, each with a random
plan (fault length, restarts, kills) drawn from the seed, on a fresh secure broker. Prints
the fault tests' table and exits 1 if any run lost an alert, kept a duplicate after dedupe
by id, broke an order or failed to finish. The namespace scenarios need root; without it
they are left out, saying why. Not part of `make test`. A failed run's directory (node
log, outbox, broker log) is kept and named.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.support import netns
from tests.support.fault_report import Row, table, write_json
from tests.support.faults import SCENARIOS, Plan, run


def plan(rng: random.Random, wait_for_link: bool) -> Plan:
    return Plan(fault_s=round(rng.uniform(6, 20), 1), repeats=rng.randint(3, 8),
                kills=rng.randint(5, 15), seed=rng.randrange(2**31),
                wait_for_link=wait_for_link)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="stop starting runs after this")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                    help="only these (repeatable); default: all")
    ap.add_argument("--wait-for-link", action="store_true",
                    help="after a fault, press again only once the node is connected")
    args = ap.parse_args(argv)

    names = args.scenario or list(SCENARIOS)
    if (why := netns.unavailable()) is not None:
        left_out = [n for n in names if SCENARIOS[n][1] == "netns"]
        names = [n for n in names if n not in left_out]
        print(f"left out {', '.join(left_out) or 'nothing'}: {why}")
    if not names:
        print("no scenario can run here")
        return 2
    rng = random.Random(args.seed)
    first = rng.sample(names, len(names))
    deadline = time.monotonic() + args.minutes * 60
    rows: list[Row] = []
    while time.monotonic() < deadline:
        name = first.pop(0) if first else rng.choice(names)
        p = plan(rng, args.wait_for_link)
        workdir = Path(tempfile.mkdtemp(prefix="safecity-soak-"))
        try:
            row = run(name, workdir, p)
        except Exception as e:  # a scenario that could not finish is a failed run
            row = Row(name, 0, 0, 0, 0, 0, False, 0, 0, 0, 0, [f"did not finish: {e!r}"])
        rows.append(row)
        verdict = "ok" if row.ok else "FAILED"
        print(f"[{len(rows)}] {name}: {verdict} ({row.sent} sent, {row.delivered} delivered, "
              f"{row.raw_duplicates} raw dups, {row.kills} kills, {row.seconds:.0f} s; {p})",
              flush=True)
        if row.ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("\n".join(row.problems) + f"\nkept: {workdir}", flush=True)
    print("\nuplink soak (sent = committed by the node, delivered = distinct ids at the hub)")
    print(table(rows))
    write_json(rows)
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows)} runs, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
