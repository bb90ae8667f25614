"""Between provision and teardown: status, stop/start between class days, reprinting."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from labkit import outputs
from labkit.aws import addresses, ec2
from labkit.aws.errors import aws_call
from labkit.aws.session import Aws
from labkit.config import Config
from labkit.errors import InputError, RefusedError
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


def _where(groups: dict[str, list[str]]) -> str:
    """"eu-west-1: 2, us-east-1: 1": how many machines in each region."""
    return ", ".join(f"{region}: {len(ids)}" for region, ids in sorted(groups.items()))


def _machines(n: int) -> str:
    return f"{n} machine{'' if n == 1 else 's'}"


def _seats(n: int) -> str:
    return f"{n} seat{'' if n == 1 else 's'}"


def _wait(aws: Aws, region: str, ids: list[str], waiter: str) -> None:
    with aws_call("ec2", f"waiting for machines ({waiter})", region=region):
        aws.client("ec2", region).get_waiter(waiter).wait(
            InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120})


def _in_regions(groups: dict[str, list[str]], work: Callable[[str, list[str]], None]) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        list(pool.map(lambda region: work(region, groups[region]), groups))


def _stopped_disks_usd(config: Config, found: dict[str, ec2.Instance]) -> float | None:
    """What the stopped seats' disks cost per hour (a stopped machine is not billed)."""
    from labkit.pricing import PriceBook

    book = PriceBook.shipped()
    total = 0.0
    for inst in found.values():
        price = book.disk(inst.region, config.volume_gb)
        if price is None:
            return None
        total += price.usd_per_hour
    return total


def stop(config: Config, out: Path, *, profile: str | None, console: Console) -> None:
    """Stop every running machine of the session, found by tag (state.json not needed);
    terminate its EMR clusters, which cannot stop."""
    from labkit import clusters

    ledger = open_ledger(config, out, must_exist=False)
    aws = Aws(profile)
    regions = regions_of(config, ledger)
    found = live_instances(aws, config, regions)
    groups = _by_region(found, {"pending", "running"})
    already = [s for s, inst in found.items() if inst.state in ("stopping", "stopped")]
    stopped_clusters = clusters.stop_all(aws, config, ledger, console)

    def one(region: str, ids: list[str]) -> None:
        ec2.stop(aws, region, ids)
        _wait(aws, region, ids, "instance_stopped")

    _in_regions(groups, one)
    if ledger.path.exists():
        with ledger.editing() as st:
            for seat in found:
                if seat in st.seats:
                    st.seats[seat].instance_state = "stopped"

    n = sum(len(ids) for ids in groups.values())
    session = config.session
    if not found:
        console.print(f"no machine of session {session} in {', '.join(regions)}; "
                      "nothing to stop", markup=False)
    elif n:
        console.print(f"stopped {_machines(n)} ({_where(groups)})"
                      + (f"; {len(already)} were already stopped" if already else ""),
                      markup=False)
    else:
        console.print(f"all {_machines(len(found))} of session {session} were already "
                      "stopped", markup=False)
    if stopped_clusters:
        console.print(f"terminated {stopped_clusters} EMR cluster"
                      f"{'' if stopped_clusters == 1 else 's'}: EMR cannot pause a cluster; "
                      "`labkit start` creates new ones and updates each seat's "
                      "~/.mrjob.conf", markup=False)
    if found:
        disks = _stopped_disks_usd(config, found)
        cost = (f"about ${disks:,.2f}/hour for the class" if disks is not None
                else "a few cents a day per seat")
        console.print("kept: every seat's disk, files and password. While stopped the "
                      f"machines cost only their disks ({cost}).", markup=False)
        console.print("next class day: `labkit start`. Public addresses usually change on "
                      "start; it rewrites credentials.csv, ssh_config, known_hosts and "
                      "handouts.pdf and names the seats whose cards to reprint.",
                      markup=False)


def _check_ssh(config: Config, ledger: Ledger, out: Path, seats: list[str]
               ) -> dict[str, str]:
    """Each seat answers SSH with its pinned host key: seat -> why not, for those that
    do not within ``ssh_wait_seconds``."""
    import time

    from labkit import bootstrap as ssh
    from labkit.access import target_for

    deadline = time.monotonic() + config.ssh_wait_seconds

    def work(target: ssh.Target) -> None:
        ssh.wait_for_ssh(target, deadline=deadline).close()

    targets = [target_for(config, ledger, out, s) for s in seats]
    outcomes = ssh.fan_out(targets, work, parallel=config.parallel)
    return {s: f"not reachable over SSH after start: {o.reason}"
            for s, o in outcomes.items() if not o.ok}


def start(config: Config, out: Path, *, profile: str | None, console: Console) -> dict[str, str]:
    """Start the session's stopped machines, record their new addresses, rewrite the
    session files, check that every seat answers SSH, and give the seats new clusters.

    Returns seat -> why it is not ready (the command then exits 1 and names them).
    Refuses (exit 2) when the session has no machine at all: starting clusters for a
    class that was torn down would only cost money.
    """
    from labkit import clusters

    ledger = open_ledger(config, out)
    aws = Aws(profile)
    regions = regions_of(config, ledger)
    every = live_instances(aws, config, regions)
    found = {s: i for s, i in every.items() if s in ledger.state.seats}
    strangers = sorted(set(every) - set(found))
    if strangers:
        console.print(f"not started: {_machines(len(strangers))} of this session for seats "
                      f"that {ledger.path} does not know ({', '.join(strangers)})",
                      markup=False)
    if not found:
        raise RefusedError(
            f"session {config.session} has no machine in {', '.join(regions)}; nothing "
            "was started", hint="it was torn down or never provisioned: `labkit provision "
                                "ROSTER` makes new machines (the passwords stay the same)")
    groups = _by_region(found, {"stopped", "stopping"})

    def one(region: str, ids: list[str]) -> None:
        _wait(aws, region, ids, "instance_stopped")
        ec2.start(aws, region, ids)
        _wait(aws, region, ids, "instance_running")

    _in_regions(groups, one)
    n = sum(len(ids) for ids in groups.values())
    if n:
        console.print(f"started {_machines(n)} ({_where(groups)})", markup=False)
        found = {s: i for s, i in live_instances(aws, config, regions).items()
                 if s in ledger.state.seats}
    else:
        console.print("every machine was already running; nothing to start", markup=False)

    changed: list[tuple[str, str, str]] = []
    with ledger.editing() as st:
        for seat, record in st.seats.items():
            inst = found.get(seat)
            if inst is None:
                continue
            host = inst.private_ip if config.connect == "private" else inst.public_ip
            if (config.stable_addresses and config.connect == "public"
                    and inst.state == "running"):
                # The seat's Elastic IP, attached again if the start left it off.
                record.allocation_id, host = addresses.ensure_address(
                    aws, inst.region, session=config.session, seat=seat,
                    instance_id=inst.instance_id, current_ip=inst.public_ip)
            if host and host != record.host:
                changed.append((seat, record.host, host))
            record.host = host or record.host
            record.instance_state = inst.state
            record.private_ip = inst.private_ip or record.private_ip
    roster = roster_from_ledger(ledger)
    # Written now, so the new addresses are on disk even if a cluster fails below.
    outputs.write_all(config, ledger, roster, out)

    failures: dict[str, str] = {}
    for seat in ledger.state.seats:
        inst = found.get(seat)
        if inst is None:
            failures[seat] = ("no machine (terminated, or never launched); `labkit provision "
                              "ROSTER` makes a new one")
        elif inst.state != "running":
            failures[seat] = f"the machine is {inst.state}, not running"
    failures.update(_check_ssh(config, ledger, out,
                               [s for s in ledger.state.seats if s not in failures]))

    if config.emr.mode != "none":
        serve = [s for s in ledger.state.seats if s in found]
        for seat, why in clusters.start_all(aws, config, ledger, out, console,
                                            seats=serve).items():
            failures.setdefault(seat, why)
        outputs.write_all(config, ledger, roster, out)  # the cards name the new clusters

    total = len(ledger.state.seats)
    console.print(f"{total - len(failures)} of {_seats(total)} answer SSH and are ready",
                  markup=False)
    if changed:
        console.print(f"[bold]{_seats(len(changed))} got a new address[/]: reprint "
                      f"{'its card' if len(changed) == 1 else 'their cards'} "
                      f"({out / 'handouts.pdf'}; credentials.csv, ssh_config and "
                      "known_hosts are updated too)")
        for seat, old, new in changed:
            console.print(f"  {seat}: {old or '-'} -> {new}", markup=False)
    elif len(failures) < total:
        console.print("every seat kept its address: the printed cards are still right",
                      markup=False)
    return failures
