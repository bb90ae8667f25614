"""Issue 3's tests, on the sandbox cloud with real SSH.

labkit is driven as an instructor drives it, through the CLI (``Course.labkit``/``popen``);
boto3 only looks at what it left behind, and students log in with what was printed:
the password from credentials.csv, the host key from known_hosts, password
authentication only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import WHEELHOUSE, Course

from labkit.bootstrap import SshFailure, Target, password_login
from labkit.rehearsal import read_known_hosts
from labkit.sandbox import Sandbox

REGIONS = ["eu-west-1", "us-east-1", "sa-east-1"]
MakeCourse = Callable[..., Course]


# -- looking at what labkit left behind ---------------------------------------------------

def machines_by_seat(course: Course, regions: list[str], *, live_only: bool = True
                     ) -> dict[str, list[dict[str, Any]]]:
    """seat tag -> the session's instances (terminated ones too unless live_only)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for region in regions:
        pages = course.boto("ec2", region).get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:labkit:session", "Values": [course.session]}])
        for page in pages:
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    if live_only and inst["State"]["Name"] in ("terminated", "shutting-down"):
                        continue
                    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                    inst["_region"] = region
                    found.setdefault(tags.get("labkit:seat", ""), []).append(inst)
    return found


def target(course: Course, row: dict[str, str]) -> Target:
    """How a student reaches their seat: the printed host and user, the pinned host key."""
    known = read_known_hosts(course.out / "known_hosts")
    return Target(row["seat"], row["host"], row["username"], known[row["host"]],
                  course.out / "id_ed25519", str(course.cloud.ssh_config_path))


def try_login(course: Course, row: dict[str, str], password: str | None = None) -> str:
    """"ubuntu" when the password logs in, else the reason it did not."""
    try:
        return password_login(target(course, row), password or row["password"])
    except SshFailure as e:
        return f"refused: {e}"


def login_everyone(course: Course, rows: list[dict[str, str]]) -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip([r["seat"] for r in rows],
                        pool.map(lambda r: try_login(course, r), rows)))


def instance_of(course: Course, seat: str) -> str:
    return str(course.state()["seats"][seat]["instance_id"])


def bootstrap_runs(course: Course, seat: str) -> int:
    log = course.out / "logs" / f"{seat}.log"
    return log.read_text().count("--- bootstrap started") if log.exists() else 0


def summary_of(stdout: str) -> str:
    """The summary printed after the progress lines."""
    return stdout[stdout.rfind("\n", 0, stdout.rindex(" seats ready")) + 1:]


def start_class(root: Path, regions: list[str], session: str = "test-class",
                **knobs: Any) -> Course:
    cloud = Sandbox(root / "cloud", regions=regions,
                    wheelhouse=WHEELHOUSE if WHEELHOUSE.is_dir() else None, **knobs)
    cloud.start()
    (root / "course").mkdir()
    return Course(root / "course", cloud, session)


# -- 30 seats, one region full: the class most tests below look at ------------------------

@dataclass
class Spilled:
    course: Course
    result: subprocess.CompletedProcess[str]
    seconds: float
    key_id: str
    secret: str


@pytest.fixture(scope="module")
def spilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spilled]:
    """30 seats over three regions, eu-west-1 with room for 5 machines. The instructor's
    AWS keys are unique markers (moto takes any), to look for them on the machines."""
    course = start_class(tmp_path_factory.mktemp("spill"), REGIONS,
                         capacity={"eu-west-1": 5})
    try:
        key_id = "AKIA" + secrets.token_hex(8).upper()
        secret = "instructor-secret-" + secrets.token_urlsafe(24)
        course.env_extra.update({"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret})
        course.write([f"s{i:02d}" for i in range(30)])
        started = time.monotonic()
        result = course.labkit("provision", "roster.csv")
        yield Spilled(course, result, time.monotonic() - started, key_id, secret)
    finally:
        course.cloud.stop()


def test_a_full_region_spills_over_and_the_summary_says_where_and_why(spilled: Spilled
                                                                        ) -> None:
    course, result = spilled.course, spilled.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    machines = machines_by_seat(course, REGIONS)
    assert sorted(machines) == [f"s{i:02d}" for i in range(30)]
    assert all(len(m) == 1 for m in machines.values()), "a seat has two machines"
    per_region = Counter(m[0]["_region"] for m in machines.values())
    assert per_region["eu-west-1"] == 5, per_region
    assert sum(per_region.values()) == 30
    assert all(m[0]["State"]["Name"] == "running" for m in machines.values())

    rows = course.credentials()
    assert {r["seat"]: r["region"] for r in rows} == {
        s: m[0]["_region"] for s, m in machines.items()}
    moved = sorted(s for s, m in machines.items() if m[0]["_region"] != "eu-west-1")
    assert len(moved) == 25
    summary = summary_of(result.stdout)
    assert "30/30 seats ready" in summary
    assert re.search(r"25 seats moved from eu-west-1 to \S+: eu-west-1 had no capacity .*"
                     r"InsufficientInstanceCapacity", summary), summary
    named = set(re.findall(r"\bs\d\d\b", summary))
    assert named == set(moved), "the summary names exactly the seats that moved"

    state = course.state()["seats"]
    for seat in moved:
        note = state[seat]["placement_note"]
        assert note.startswith("moved from eu-west-1 to ") and \
            "InsufficientInstanceCapacity" in note, (seat, note)
    for seat in set(machines) - set(moved):
        assert state[seat]["placement_note"] == ""
    print(f"30-seat provision with spill-over: {spilled.seconds:.1f} s")


def test_every_seat_logs_in_with_its_printed_password_and_pinned_host_key(
        spilled: Spilled) -> None:
    course = spilled.course
    rows = course.credentials()
    assert len(rows) == 30
    assert login_everyone(course, rows) == {r["seat"]: "ubuntu" for r in rows}
    # ...and the check can fail: a wrong password is refused.
    assert try_login(course, rows[0], password="not-" + rows[0]["password"]).startswith(
        "refused")


def test_provision_prints_and_logs_no_password_and_no_private_key(spilled: Spilled) -> None:
    course, result = spilled.course, spilled.result
    printed = result.stdout + result.stderr
    logs = "".join(p.read_text() for p in (course.out / "logs").iterdir())
    assert len(list((course.out / "logs").iterdir())) == 30
    state = course.state()["seats"]
    for row in course.credentials():
        assert row["password"] not in printed
        assert row["password"] not in logs
        assert state[row["seat"]]["password_hash"] not in logs
    private_keys = [(course.out / "id_ed25519").read_text()] + [
        s["host_key_private"] for s in state.values()]
    for key in private_keys:
        body = "".join(key.strip().splitlines()[1:-1])
        assert body[:40] not in printed.replace("\n", "")
        assert body[:40] not in logs.replace("\n", "")


# Everywhere a bootstrap could write, and every process's environment. In /usr/local and
# /var/lib, which hold mostly the image's own files (the host's, through the machine's
# overlay, that no marker made in this test run can be in), only files whose inode
# changed since the machine booted are read: whatever the machine wrote, copied or
# unpacked (tar and cp -p keep mtimes, never ctimes).
LEAK_CHECK = r"""
patterns=()
for m in "$@"; do patterns+=(-e "$m"); done
grep -rlsF "${patterns[@]}" /home /root /etc /tmp /var/tmp /opt /srv /var/log /var/spool /run
find /usr/local /var/lib -path /var/lib/labkit/wheelhouse -prune -o -type f \
  -cnewer /run/labkit/boot.sh -print0 | xargs -0r grep -lsF "${patterns[@]}"
grep -alsF "${patterns[@]}" /proc/[0-9]*/environ
true
"""


def leaks(cloud: Sandbox, instance_id: str, *markers: str, **env: str) -> list[str]:
    """The files and process environments on a machine that contain any of ``markers``."""
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", LEAK_CHECK, "bash",
            *markers]
    done = cloud.run_in(instance_id, argv, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_no_machine_holds_the_instructors_aws_keys(spilled: Spilled) -> None:
    course, keys = spilled.course, (spilled.secret, spilled.key_id)
    ids = [instance_of(course, r["seat"]) for r in course.credentials()]
    assert set(ids) <= set(course.cloud.machines())
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = dict(zip(ids, pool.map(lambda i: leaks(course.cloud, i, *keys), ids)))
    assert found == {i: [] for i in ids}
    # The check finds a key where there is one: in a process environment and in a file.
    assert leaks(course.cloud, ids[0], *keys, LEAK=spilled.secret)
    planted = ["/var/tmp/planted", "/usr/local/share/planted"]
    for path in planted:
        course.cloud.run_in(ids[0], ["sh", "-c", f"echo {spilled.key_id} > {path}"])
    assert sorted(leaks(course.cloud, ids[0], *keys)) == sorted(planted)
    course.cloud.run_in(ids[0], ["rm", *planted])


def test_status_json_has_one_running_bootstrapped_object_per_seat(spilled: Spilled) -> None:
    course = spilled.course
    result = course.labkit("status", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    creds = {r["seat"]: r for r in course.credentials()}
    assert sorted(r["seat"] for r in rows) == sorted(creds)
    for row in rows:
        printed = creds[row["seat"]]
        assert (row["region"], row["state"], row["host"], row["bootstrap"]) == (
            printed["region"], "running", printed["host"], "ok"), row


# -- placement from the vCPU quota ---------------------------------------------------------

def test_plan_reads_the_vcpu_quota_and_provision_keeps_to_it(
        make_course: MakeCourse) -> None:
    # t3.medium has 2 vCPUs: a quota of 8 is room for 4 seats.
    course = make_course(["eu-west-1", "us-east-1"], vcpu_quota={"eu-west-1": 8})
    course.write([f"s{i}" for i in range(6)])
    plan = course.labkit("plan", "roster.csv")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "vCPU quota 8, 0 in use, 2 per seat: room for 4" in plan.stdout
    assert re.search(r"eu-west-1\s*│\s*4\s*│", plan.stdout), plan.stdout
    assert re.search(r"us-east-1\s*│\s*2\s*│", plan.stdout), plan.stdout

    result = course.labkit("provision", "roster.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    per_region = Counter(m[0]["_region"] for m in
                         machines_by_seat(course, ["eu-west-1", "us-east-1"]).values())
    assert per_region == {"eu-west-1": 4, "us-east-1": 2}
    # Placed by the plan, not by launches refused and moved.
    assert "moved" not in summary_of(result.stdout)


# -- a seat whose host key changed ---------------------------------------------------------

def sshd_accepted(cloud: Sandbox, instance_id: str) -> int:
    """How many logins the seat's sshd has accepted (its log is the machine's console)."""
    return cloud.machines()[instance_id].log_path.read_text().count("Accepted ")


def openssh(course: Course, seat: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(course.out / "ssh_config"), "-o", "BatchMode=yes",
                           "-o", "ConnectTimeout=10", seat, "true"],
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def test_a_seat_whose_host_key_changed_is_refused(make_course: MakeCourse) -> None:
    course = make_course(["eu-west-1"])
    course.write(["ana", "bruno"])
    assert course.labkit("provision", "roster.csv").returncode == 0
    rows = {r["seat"]: r for r in course.credentials()}
    assert openssh(course, "bruno").returncode == 0
    victim = instance_of(course, "bruno")

    # Someone else's machine now answers at bruno's address (or its key was replaced).
    new_key = ("rm -f /etc/ssh/ssh_host_*key* && ssh-keygen -q -N '' -t ed25519 "
               "-f /etc/ssh/ssh_host_ed25519_key && kill -HUP 1")  # sshd re-reads its keys
    swap = course.cloud.run_in(victim, ["sh", "-c", new_key])
    assert swap.returncode == 0, swap.stderr
    deadline = time.monotonic() + 20
    while "host key mismatch" not in (outcome := try_login(course, rows["bruno"])):
        assert time.monotonic() < deadline, outcome
        time.sleep(0.2)
    assert outcome.startswith("refused: host key mismatch")
    assert try_login(course, rows["ana"]) == "ubuntu"

    refused = openssh(course, "bruno")
    assert refused.returncode != 0
    assert "Host key verification failed" in refused.stderr, refused.stderr
    assert openssh(course, "ana").returncode == 0

    # A re-run that must bootstrap bruno again refuses to connect at all.
    state_path = course.out / "state.json"
    state = course.state()
    state["seats"]["bruno"]["bootstrap"] = "failed"
    state_path.write_text(json.dumps(state))
    accepted = sshd_accepted(course.cloud, victim)
    rerun = course.labkit("provision", "roster.csv")
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    assert re.search(r"bruno: host key mismatch", rerun.stderr), rerun.stderr
    assert "ana:" not in rerun.stderr
    assert sshd_accepted(course.cloud, victim) == accepted, "labkit logged in anyway"
    assert bootstrap_runs(course, "bruno") == 1 and bootstrap_runs(course, "ana") == 1
    assert course.state()["seats"]["bruno"]["bootstrap"] == "failed"


# -- resume -----------------------------------------------------------------------------

def test_provision_killed_part_way_converges_with_one_machine_per_seat(
        make_course: MakeCourse) -> None:
    course = make_course(["eu-west-1", "us-east-1"])
    seats = [f"s{i}" for i in range(6)]
    course.write(seats)
    run = course.popen("provision", "roster.csv")
    try:
        deadline = time.monotonic() + 60
        while not (launched := machines_by_seat(course, ["eu-west-1", "us-east-1"])):
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            assert time.monotonic() < deadline, "no machine was launched in 60 s"
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGKILL)
    finally:
        run.kill()
        run.communicate()
    assert run.returncode == -signal.SIGKILL
    assert not (course.out / "credentials.csv").exists(), "it finished before the kill"
    print(f"killed with {len(launched)} of {len(seats)} machines launched")

    again = course.labkit("provision", "roster.csv")
    assert again.returncode == 0, again.stdout + again.stderr
    ever = machines_by_seat(course, ["eu-west-1", "us-east-1"], live_only=False)
    assert {s: len(m) for s, m in ever.items()} == dict.fromkeys(seats, 1), \
        "a seat got a second machine"
    assert "second machine" not in summary_of(again.stdout)
    rows = course.credentials()
    assert login_everyone(course, rows) == dict.fromkeys(seats, "ubuntu")


def test_lost_state_finds_the_machines_and_gives_new_passwords(
        make_course: MakeCourse) -> None:
    course = make_course(["eu-west-1"])
    seats = ["ana", "bruno", "carla"]
    course.write(seats)
    assert course.labkit("provision", "roster.csv").returncode == 0
    before = {r["seat"]: r for r in course.credentials()}
    known_before = (course.out / "known_hosts").read_text()

    (course.out / "state.json").unlink()
    again = course.labkit("provision", "roster.csv")
    assert again.returncode == 0, again.stdout + again.stderr
    summary = summary_of(again.stdout)
    assert "0 launched now, 3 already there" in summary
    assert re.search(r"new passwords .*: ana, bruno, carla", summary), summary

    ever = machines_by_seat(course, ["eu-west-1"], live_only=False)
    assert {s: [i["InstanceId"] for i in m] for s, m in ever.items()} == {
        s: [before[s]["instance_id"]] for s in seats}
    after = {r["seat"]: r for r in course.credentials()}
    assert all(after[s]["password"] != before[s]["password"] for s in seats)
    # The host keys were read back from the machines' user-data: the cards' fingerprints
    # and every student's known_hosts stay right.
    assert (course.out / "known_hosts").read_text() == known_before
    assert all(after[s]["host_key_sha256"] == before[s]["host_key_sha256"] for s in seats)
    assert login_everyone(course, list(after.values())) == dict.fromkeys(seats, "ubuntu")
    for s in seats:
        old = try_login(course, after[s], password=before[s]["password"])
        assert old.startswith("refused") and "Authentication failed" in old, old


def test_stopped_seats_are_started_and_the_sheet_has_their_new_address(
        make_course: MakeCourse) -> None:
    course = make_course(["eu-west-1"])
    course.write(["ana"])
    assert course.labkit("provision", "roster.csv").returncode == 0
    before = course.credentials()[0]
    assert course.labkit("stop").returncode == 0

    again = course.labkit("provision", "roster.csv")
    assert again.returncode == 0, again.stdout + again.stderr
    (machine,) = machines_by_seat(course, ["eu-west-1"])["ana"]
    row = course.credentials()[0]
    assert machine["State"]["Name"] == "running"
    assert machine["PublicIpAddress"] != before["host"], "the sandbox kept the address"
    assert row["host"] == machine["PublicIpAddress"]
    assert "new addresses: ana" in summary_of(again.stdout)
    assert try_login(course, row) == "ubuntu"
    assert bootstrap_runs(course, "ana") == 1


# -- a seat whose SSH never answers ------------------------------------------------------

def test_a_seat_whose_ssh_never_answers_fails_alone_and_alone_is_retried(
        make_course: MakeCourse) -> None:
    course = make_course(["eu-west-1"], dead_ssh={"bruno"})
    course.write(["ana", "bruno", "carla"], ssh_wait_seconds=15)
    first = course.labkit("provision", "roster.csv")
    assert first.returncode == 1, first.stdout + first.stderr
    assert re.search(r"bruno: SSH never answered", first.stderr), first.stderr
    assert "ana:" not in first.stderr and "carla:" not in first.stderr
    out = first.stdout
    assert out.index("bruno: failed") > max(out.index("ana: bootstrapped"),
                                            out.index("carla: bootstrapped")), \
        "the dead seat held the others up"
    rows = [r for r in course.credentials() if r["seat"] != "bruno"]
    assert login_everyone(course, rows) == {"ana": "ubuntu", "carla": "ubuntu"}

    second = course.labkit("provision", "roster.csv")
    assert second.returncode == 1
    assert re.search(r"bruno: SSH never answered", second.stderr), second.stderr
    assert "ana:" not in second.stdout and "carla:" not in second.stdout, second.stdout
    assert bootstrap_runs(course, "ana") == 1 and bootstrap_runs(course, "carla") == 1
