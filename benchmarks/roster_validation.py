"""How long labkit takes to read, check and place a large roster.

A 5,000-student roster (every fifth student in a group of three, one in ten students and
one in four groups pinned to a region) is written to a temporary file, then ``labkit.roster.load_roster`` and
``labkit.plan.place`` (three regions, the first two with quota room) are timed over a few
runs. Target: well under a second. Run: ``python benchmarks/roster_validation.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from labkit.plan import RegionRoom, place
from labkit.roster import load_roster

REGIONS = ["eu-west-1", "us-east-1", "sa-east-1"]


def write_roster(path: Path, students: int) -> None:
    lines = ["student_id,name,email,group,region"]
    for i in range(students):
        sid = f"student.{i:05d}"
        group = f"team-{i // 15:04d}" if i % 5 == 0 else ""  # i, i+5, i+10 share a seat
        region = REGIONS[(i // 10) % 3] if i % 10 == 1 else ""
        if i % 15 == 0 and (i // 15) % 4 == 0:
            region = REGIONS[(i // 15) % 3]  # pinned through its first member only
        lines.append(f'{sid},"Surname {i}, Given",{sid}@example.edu,{group},{region}')
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roster.csv"
        write_roster(path, args.students)
        room = {"eu-west-1": RegionRoom("eu-west-1", args.students // 3, "benchmark"),
                "us-east-1": RegionRoom("us-east-1", args.students // 3, "benchmark")}
        load_times, place_times = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            roster = load_roster(path)
            middle = time.perf_counter()
            placement = place(roster.seats, REGIONS, room)
            end = time.perf_counter()
            load_times.append(middle - start)
            place_times.append(end - middle)

    total = [a + b for a, b in zip(load_times, place_times)]
    print(f"{len(roster.students)} students in {len(roster.seats)} seats, "
          f"{sum(1 for s in roster.seats if s.region)} pinned; placed "
          f"{placement.counts(REGIONS)}, {len(placement.unplaced)} unplaced")
    print(f"load_roster: median {statistics.median(load_times) * 1000:.1f} ms")
    print(f"place:       median {statistics.median(place_times) * 1000:.1f} ms")
    print(f"both:        median {statistics.median(total) * 1000:.1f} ms, "
          f"worst {max(total) * 1000:.1f} ms over {args.runs} runs")
    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
