"""Between provision and teardown: status, stop/start between class days, reprinting."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from labkit import outputs
from labkit.aws import ec2
from labkit.aws.errors import aws_call
from labkit.aws.session import Aws
from labkit.config import Config
from labkit.errors import InputError
from labkit.roster import Roster, Seat, Student
from labkit.state import Ledger


def open_ledger(config: Config, out: Path, *, must_exist: bool = True) -> Ledger:
    path = out / "state.json"
    if must_exist and not path.exists():
        raise InputError("no session state here", path=str(path),
                         hint="run `labkit provision ROSTER` first, or pass --out / --session "
                              "for the right session folder")
    return Ledger.open(path, config.session)


def roster_from_ledger(ledger: Ledger) -> Roster:
    """The roster as provisioned, kept in state so reprinting needs no roster file."""
    students_by_seat = ledger.state.extra.get("students", {})
    seats = []
    for name in ledger.state.seats:
        people = tuple(Student(**s) for s in students_by_seat.get(name, [])) or (
            Student(name, "", "", "", "", 0),)
        seats.append(Seat(name=name, students=people, region=""))
    return Roster(path="state.json", students=tuple(p for s in seats for p in s.students),
                  seats=tuple(seats))


def regions_of(config: Config, ledger: Ledger) -> list[str]:
    regions = list(config.regions) + [s.region for s in ledger.state.seats.values() if s.region]
    return list(dict.fromkeys(regions))


def live_instances(aws: Aws, config: Config, regions: list[str]) -> dict[str, ec2.Instance]:
    """seat -> its machine, one describe per region, regions in parallel."""
    with ThreadPoolExecutor(max_workers=max(1, len(regions))) as pool:
        lists = list(pool.map(lambda r: ec2.find_instances(aws, r, config.session), regions))
    found: dict[str, ec2.Instance] = {}
    for inst in (i for lst in lists for i in lst):
        if inst.seat and (inst.seat not in found or inst.state == "running"):
            found[inst.seat] = inst
    return found


def status(config: Config, out: Path, *, profile: str | None) -> list[dict[str, Any]]:
    ledger = open_ledger(config, out, must_exist=False)
    aws = Aws(profile)
    live = live_instances(aws, config, regions_of(config, ledger))
    from labkit import clusters

    cluster_states = clusters.states(aws, ledger)
    names = list(dict.fromkeys(list(ledger.state.seats) + sorted(live)))
    students = ledger.state.extra.get("students", {})
    rows = []
    for name in names:
        st = ledger.seat(name) if name in ledger.state.seats else None
        inst = live.get(name)
        rows.append({
            "seat": name,
            "students": [s["student_id"] for s in students.get(name, [])],
            "region": inst.region if inst else (st.region if st else ""),
            "instance_id": inst.instance_id if inst else (st.instance_id if st else ""),
            "state": inst.state if inst else "none",
            "host": (inst.private_ip if config.connect == "private" else inst.public_ip)
            if inst else (st.host if st else ""),
            "bootstrap": st.bootstrap if st else "unknown (no state.json)",
            "cluster_id": st.cluster_id if st else "",
            "cluster_state": cluster_states.get(st.cluster_id, "") if st and st.cluster_id
            else "",
            "error": st.error if st else "",
        })
    return rows


def rerender(config: Config, out: Path) -> list[Path]:
    ledger = open_ledger(config, out)
    outputs.write_all(config, ledger, roster_from_ledger(ledger), out)
    return [out / "credentials.csv", out / "handouts.pdf", out / "ssh_config",
            out / "known_hosts"]


def _by_region(found: dict[str, ec2.Instance], states: set[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for inst in found.values():
        if inst.state in states:
            groups.setdefault(inst.region, []).append(inst.instance_id)
    return groups


def _wait(aws: Aws, region: str, ids: list[str], waiter: str) -> None:
    with aws_call("ec2", f"waiting for machines ({waiter})", region=region):
        aws.client("ec2", region).get_waiter(waiter).wait(
            InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120})


def stop(config: Config, out: Path, *, profile: str | None, console: Console) -> None:
    ledger = open_ledger(config, out, must_exist=False)
    aws = Aws(profile)
    found = live_instances(aws, config, regions_of(config, ledger))
    groups = _by_region(found, {"pending", "running"})
    from labkit import clusters

    stopped_clusters = clusters.stop_all(aws, config, ledger, console)

    def one(region: str) -> None:
        ec2.stop(aws, region, groups[region])
        _wait(aws, region, groups[region], "instance_stopped")

    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        list(pool.map(one, groups))
    for seat, inst in found.items():
        if seat in ledger.state.seats:
            ledger.update_seat(seat, instance_state="stopped")
    n = sum(len(v) for v in groups.values())
    console.print(f"stopped {n} machines in {len(groups)} regions (disks, files and passwords "
                  f"kept; a stopped machine costs only its disk)"
                  + (f"; terminated {stopped_clusters} EMR clusters (they cannot stop; "
                     "`labkit start` creates new ones)" if stopped_clusters else ""))


def start(config: Config, out: Path, *, profile: str | None, console: Console) -> dict[str, str]:
    ledger = open_ledger(config, out)
    aws = Aws(profile)
    regions = regions_of(config, ledger)
    found = live_instances(aws, config, regions)
    groups = _by_region(found, {"stopped", "stopping"})

    def one(region: str) -> None:
        ids = groups[region]
        _wait(aws, region, ids, "instance_stopped")
        ec2.start(aws, region, ids)
        _wait(aws, region, ids, "instance_running")

    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        list(pool.map(one, groups))
    found = live_instances(aws, config, regions)
    changed = []
    for seat, inst in found.items():
        if seat not in ledger.state.seats:
            continue
        host = inst.private_ip if config.connect == "private" else inst.public_ip
        st = ledger.seat(seat)
        if host and host != st.host:
            changed.append(f"{seat}: {st.host or '-'} -> {host}")
        ledger.update_seat(seat, host=host or st.host, instance_state=inst.state,
                           private_ip=inst.private_ip)
    from labkit import clusters

    failures = clusters.start_all(aws, config, ledger, out, console)
    outputs.write_all(config, ledger, roster_from_ledger(ledger), out)
    n = sum(len(v) for v in groups.values())
    console.print(f"started {n} machines in {len(groups)} regions")
    if changed:
        console.print(f"[bold]{len(changed)} seats have a new address[/] (credentials.csv, "
                      "ssh_config and handouts.pdf are updated; reprint these cards):")
        for line in changed:
            console.print(f"  {line}", markup=False)
    else:
        console.print("every seat kept its address; the printed handouts are still right")
    return failures
