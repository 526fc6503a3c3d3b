"""Summarise a py-spy raw (collapsed) profile: self and inclusive samples per frame, per thread.

.venv/bin/python bench/spy_summary.py bench/out/spy-X.txt [--top 40] [--match TEXT]
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

# Innermost frames that are waiting, not working (time.sleep lines of pynetdicom's reactors,
# condition waits, select with a timeout).
IDLE = (
    "dul.py:403)",
    "association.py:714)",
    "Condition.wait",
    "_PollLikeSelector.select",
    "Popen._wait",
    "Event.wait",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", type=Path)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--match", action="append", default=[], help="keep stacks containing any")
    ap.add_argument(
        "--busy",
        action="store_true",
        help="drop samples whose innermost frame sleeps or waits (py-spy counts some as busy)",
    )
    args = ap.parse_args()
    selfc: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in args.path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or (args.match and not any(m in stack for m in args.match)):
            continue
        count = int(n)
        frames = stack.split(";")
        if args.busy and any(w in frames[-1] for w in IDLE):
            continue
        total += count
        threads[frames[0]] += count
        names = [re.sub(r"\s*\((.*?):\d+\)", r" (\1)", f) for f in frames[1:]]
        if names:
            selfc[names[-1]] += count
        for name in set(names):
            incl[name] += count
    print(f"samples: {total}")
    for t, c in threads.most_common(10):
        print(f"  thread {t}: {c}")
    print("\nself:")
    for name, c in selfc.most_common(args.top):
        print(f"{c:7d} {100 * c / total:5.1f}%  {name}")
    print("\ninclusive:")
    for name, c in incl.most_common(args.top):
        print(f"{c:7d} {100 * c / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
