"""How labkit's SSH bootstrap fan-out scales, beside a plain ssh loop and Ansible.

On the local sandbox cloud (moto plus one real sshd per machine, in a private network
namespace), ``labkit provision`` brings up the largest number of seats asked for, with a
bootstrap whose only extra work is ``sleep 2`` (no apt or pip packages). That run gives
the AWS API calls per seat (counted by labkit's botocore ``before-call`` hooks,
``Aws.calls``) and the provision's peak memory. Then, against those same machines, the
same per-seat bootstrap script (the one labkit renders, password hash and all) is run
again for the first 1, 16 and 64 seats by:

* labkit: ``labkit.bootstrap.bootstrap_seats`` (Fabric, pinned host keys, parallel=64),
  in a process of its own, timed around that one call;
* a plain ssh loop, one seat after another:
  ``ssh -F <out>/ssh_config <seat> 'bash -s' < script`` (labkit's ssh_config: known_hosts
  pinned, StrictHostKeyChecking yes);
* Ansible (``benchmarks/ansible/bootstrap.yml``, the ``script`` module), with the
  default forks (5) and with forks=64, known_hosts pinned the same way.

Every step of the script checks before it changes anything, so these runs redo the checks
and the ``sleep``, as a re-run of a bootstrap does. Target: 64 seats take at most 1.5
times as long as one seat with labkit.

Needs root (the sandbox's namespaces) and, for the Ansible rows, ``ansible-playbook``
(``pip install ansible-core``, best in a venv of its own; see benchmarks/README.md).
Run: ``python benchmarks/bootstrap_fanout.py [--sizes 1,16,64] [--work 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "ansible" / "bootstrap.yml"
ANSIBLE_CFG = HERE / "ansible" / "ansible.cfg"
README = HERE / "README.md"
SECTION = "## Bootstrap fan-out"
BEGIN = "<!-- bootstrap_fanout.py: figures below are rewritten by each run -->"
END = "<!-- bootstrap_fanout.py: end of figures -->"
SESSION = "bench-fanout"
REGION = "eu-west-1"
PARALLEL = 64
TARGET_RATIO = 1.5
SSH_WAIT_SECONDS = 60


# -- measuring one command --------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds spent during one run, by whom. The sandbox's machines share this host's
    CPUs with the client, and so does anything else running on the host."""

    client: float   # the bootstrapping command and its children (its rusage)
    sandbox: float  # the rest of this script's process tree: the seats' sshd, bash,
                    # sftp-server..., moto, the AWS proxy, this script
    other: float    # every other process on the host


@dataclass
class Run:
    """One method bootstrapping ``seats`` seats."""

    method: str
    seats: int
    seconds: float                 # wall time of the bootstrap: the figure compared
    command_seconds: float         # the whole command, interpreter start included
    cpu: CpuSplit                  # where the host's CPU time went during the run
    peak_rss_mb: float             # labkit: its process's VmHWM; others: not compared
    ok: int
    failed: dict[str, str] = field(default_factory=dict)
    seat_seconds: list[float] = field(default_factory=list)  # labkit: each seat's own time
    maxrss_mb: float = 0.0         # labkit: getrusage's figure (see peak_rss_kb)


def host_busy_ticks() -> int:
    """Busy jiffies of all CPUs together, from /proc/stat (steal left out)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (
            int(v) for v in f.readline().split()[1:8])
    return user + nice + system + irq + softirq


def tree_ticks() -> dict[tuple[int, int], int]:
    """(pid, start time) -> user+sys jiffies, reaped children's included, for this process
    and every descendant (the sandbox's machines run under it)."""
    parent: dict[int, int] = {}
    ticks: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry)
        parent[pid] = int(fields[1])
        # fields[11:15]: utime, stime, cutime, cstime; fields[19]: start time
        ticks[pid] = (int(fields[19]), sum(int(v) for v in fields[11:15]))
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[tuple[int, int], int] = {}
    stack = [os.getpid()]
    while stack:
        pid = stack.pop()
        if pid in ticks:
            found[(pid, ticks[pid][0])] = ticks[pid][1]
            stack.extend(children.get(pid, []))
    return found


class CpuMeter:
    """Host and process-tree CPU time from creation to ``split``.

    A process of the tree that ends meanwhile is counted in its parent's reaped-children
    time; one that starts meanwhile counts whole. Reading /proc takes milliseconds and
    happens only before and after a run, never during one.
    """

    def __init__(self) -> None:
        self.host = host_busy_ticks()
        self.tree = tree_ticks()

    def split(self, client: float) -> CpuSplit:
        host = (host_busy_ticks() - self.host) / TICK
        now = tree_ticks()
        tree = sum(v - self.tree.get(k, 0) for k, v in now.items()) / TICK
        return CpuSplit(client, max(0.0, tree - client), max(0.0, host - tree))


def run_measured(argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path
                 ) -> tuple[int, float, CpuSplit, float]:
    """Run a command; return (exit code, wall s, CPU split, client peak RSS MB)."""
    meter = CpuMeter()
    start = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
        # wait4 rather than wait: the rusage of this command's tree and nothing else.
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = meter.split(usage.ru_utime + usage.ru_stime)
    return proc.returncode, wall, cpu, usage.ru_maxrss / 1024


def peak_rss_kb() -> int:
    """This process's own peak resident memory (VmHWM), in KiB.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` is reported too, but it cannot go below the
    parent's peak: Linux carries the parent's high-water mark into the child at exec
    (subprocess forks with vfork), so a child of this ~100 MB benchmark never reports less.
    """
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    env.update(extra or {})
    return env


# -- the class on the sandbox -----------------------------------------------------------

def seat_names(n: int) -> list[str]:
    return [f"s{i:02d}" for i in range(1, n + 1)]


def write_course(course: Path, cloud: Any, seats: int, work: float) -> None:
    """labkit.toml and roster.csv: one region, no packages, `sleep WORK` as the bootstrap's
    only course command, no EMR."""
    course.mkdir(parents=True, exist_ok=True)
    roster = ["student_id,name,email,group,region"]
    roster += [f"{s},,,," for s in seat_names(seats)]
    (course / "roster.csv").write_text("\n".join(roster) + "\n")
    sleep = f"sleep {work:g}"
    (course / "labkit.toml").write_text("\n".join([
        f'session = "{SESSION}"',
        f'regions = ["{REGION}"]',
        f"ssh_config = {json.dumps(str(cloud.ssh_config_path))}",
        f"parallel = {PARALLEL}",
        f"ssh_wait_seconds = {SSH_WAIT_SECONDS}",
        "",
        "[images]",
        f'"{REGION}" = "{cloud.image_for(REGION)}"',
        "",
        "[bootstrap]",
        "apt_packages = []",
        "pip_packages = []",
        f'commands = ["{sleep}"]',
        "",
        "[emr]",
        'mode = "none"',
        "",
        "[budget]",
        "max_hourly_usd = 100000.0",
        "alarm_usd = []",
        "",
    ]))


def out_dir(course: Path) -> Path:
    return course / f"labkit-{SESSION}"


def provision(course: Path, cloud: Any, work_dir: Path) -> dict[str, Any]:
    """`labkit provision` in a process of its own; its API calls, memory and timings."""
    result_path = work_dir / "provision.json"
    argv = [sys.executable, str(Path(__file__).resolve()), "_provision",
            "--course", str(course), "--result", str(result_path)]
    code, wall, cpu, _ = run_measured(argv, env=cloud.environ(clean_env()), cwd=course,
                                      log=work_dir / "provision.log")
    if code != 0 or not result_path.exists():
        tail = (work_dir / "provision.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"labkit provision failed (exit {code}):\n{tail}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    result.update(wall=wall, cpu=cpu)
    printed = re.search(r"AWS API calls: (\d+)",
                        (work_dir / "provision.log").read_text(errors="replace"))
    result["summary_calls"] = int(printed.group(1)) if printed else None
    result["bootstrap_phase"] = bootstrap_phase(out_dir(course) / "logs")
    return result


def bootstrap_phase(logs: Path) -> float | None:
    """First start to last end of the seats' bootstraps inside provision, from their logs
    (whole seconds: that is what the logs record)."""
    starts: list[int] = []
    ends: list[int] = []
    for log in logs.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            m = re.match(r"--- bootstrap (started|ended) \d{4}-\d\d-\d\d (\d\d):(\d\d):(\d\d)",
                         line)
            if m:
                h, mi, s = (int(x) for x in m.group(2, 3, 4))
                (starts if m.group(1) == "started" else ends).append(h * 3600 + mi * 60 + s)
    if not starts or not ends:
        return None
    return float(max(ends) - min(starts))


def render_scripts(course: Path, dest: Path) -> dict[str, str]:
    """Each seat's bootstrap script, as provision renders it, in a private folder;
    seat -> address."""
    from labkit.aws.session import Aws
    from labkit.config import load_config
    from labkit.files import write_private
    from labkit.provision import Provisioner
    from labkit.state import Ledger

    config = load_config(course / "labkit.toml")
    out = out_dir(course)
    ledger = Ledger.open(out / "state.json", config.session)
    prov = Provisioner.for_session(config, ledger, out, Aws(None))
    prov.materials_url = prov.materials_sha = prov.materials_name = ""  # none configured
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    hosts = {}
    for name in sorted(ledger.state.seats):
        write_private(dest / f"{name}.sh", prov.bootstrap_script(name), mode=0o700)
        hosts[name] = ledger.seat(name).host
    return hosts


def idle_split(seconds: float) -> CpuSplit:
    """CPU seconds per second while nothing is bootstrapped."""
    meter = CpuMeter()
    time.sleep(seconds)
    cpu = meter.split(0.0)
    return CpuSplit(0.0, cpu.sandbox / seconds, cpu.other / seconds)


def quiet_machine() -> tuple[CpuSplit, CpuSplit]:
    """Slow the sandbox's reconcile loop for the measurements; the host's idle load before
    and after.

    The loop asks moto to describe every instance each 0.3 s, so that a launch or a stop
    soon shows as a machine; with 64 instances that is a steady load on the same CPUs the
    seats use, and nothing like it runs beside a real class. Nothing launches or stops
    while the bootstraps are measured, so every 30 s is plenty. (A module setting of the
    sandbox, read on every round of the loop.)
    """
    from labkit.sandbox import cloud as sandbox_cloud

    before = idle_split(3.0)
    sandbox_cloud._RECONCILE_EVERY = 30.0
    time.sleep(1.0)  # let the round in flight finish
    return before, idle_split(3.0)


# -- the three ways to bootstrap ----------------------------------------------------------

def run_labkit(course: Path, scripts: Path, seats: int, work_dir: Path, tag: str) -> Run:
    result_path = work_dir / f"labkit-{tag}.json"
    argv = [sys.executable, str(Path(__file__).resolve()), "_fanout",
            "--course", str(course), "--scripts", str(scripts), "--seats", str(seats),
            "--logs", str(work_dir / f"logs-labkit-{tag}"), "--result", str(result_path)]
    code, wall, cpu, _ = run_measured(argv, env=clean_env(), cwd=work_dir,
                                      log=work_dir / "labkit.log")
    if not result_path.exists():
        raise SystemExit(f"the labkit fan-out process failed (exit {code}); see "
                         f"{work_dir / 'labkit.log'}")
    r = json.loads(result_path.read_text())
    return Run("labkit (Fabric, parallel=64)", seats, r["seconds"], wall, cpu,
               r["hwm_kb"] / 1024, r["ok"], r["failed"],
               seat_seconds=r["seat_seconds"], maxrss_mb=r["maxrss_kb"] / 1024)


SSH_LOOP = r"""
cfg=$1 scripts=$2 logs=$3
shift 3
for seat in "$@"; do
  ssh -F "$cfg" -o BatchMode=yes "$seat" 'bash -s' < "$scripts/$seat.sh" > "$logs/$seat.log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || echo "FAILED $seat exit $rc"
done
"""


def run_ssh_loop(course: Path, scripts: Path, seats: int, work_dir: Path, tag: str) -> Run:
    logs = work_dir / f"logs-ssh-{tag}"
    logs.mkdir()
    names = seat_names(seats)
    log = work_dir / f"ssh-{tag}.out"
    argv = ["bash", "-c", SSH_LOOP, "ssh-loop", str(out_dir(course) / "ssh_config"),
            str(scripts), str(logs), *names]
    _, wall, cpu, _ = run_measured(argv, env=clean_env(), cwd=work_dir, log=log)
    failed = {m.group(1): f"exit {m.group(2)}" for m in
              re.finditer(r"FAILED (\S+) exit (\d+)", log.read_text())}
    for name in names:  # exit 0 is not enough: `bash -s` must have read the whole script
        seat_log = logs / f"{name}.log"
        if name not in failed and "== labkit: done" not in seat_log.read_text(errors="replace"):
            failed[name] = "the script did not run to its end"
    return Run("ssh loop, one seat after another", seats, wall, wall, cpu, 0.0,
               seats - len(failed), failed)


def run_ansible(playbook_cmd: str, course: Path, scripts: Path, hosts: dict[str, str],
                seats: int, forks: int | None, work_dir: Path, tag: str) -> Run:
    import yaml

    out = out_dir(course)
    names = seat_names(seats)
    inventory = work_dir / f"inventory-{tag}.yml"
    ssh_args = (f"-o UserKnownHostsFile={out / 'known_hosts'} -o StrictHostKeyChecking=yes "
                "-o IdentitiesOnly=yes")
    inventory.write_text(yaml.safe_dump({"seats": {
        "hosts": {n: {"ansible_host": hosts[n], "bootstrap_script": str(scripts / f"{n}.sh")}
                  for n in names},
        "vars": {"ansible_user": "ubuntu",
                 "ansible_ssh_private_key_file": str(out / "id_ed25519"),
                 "ansible_ssh_common_args": ssh_args,
                 "ansible_python_interpreter": "/usr/bin/python3"}}}))
    control = work_dir / f"ansible-cp-{tag}"  # no connection reused from an earlier run
    control.mkdir()
    env = clean_env({"ANSIBLE_CONFIG": str(ANSIBLE_CFG),
                     "ANSIBLE_HOME": str(work_dir / "ansible-home"),
                     "ANSIBLE_LOCAL_TEMP": str(work_dir / "ansible-tmp"),
                     "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control)})
    playbook = [playbook_cmd, "-i", str(inventory), str(PLAYBOOK)]
    if forks is not None:
        playbook[1:1] = ["--forks", str(forks)]
    log = work_dir / f"ansible-{tag}.out"
    seconds_path = work_dir / f"ansible-{tag}.seconds"
    argv = [sys.executable, str(Path(__file__).resolve()), "_ansible", str(control),
            str(seconds_path), *playbook]
    _, command_wall, cpu, _ = run_measured(argv, env=env, cwd=work_dir, log=log)
    wall = float(seconds_path.read_text()) if seconds_path.exists() else command_wall
    recap = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)",
        log.read_text(errors="replace"), re.MULTILINE)}
    failed = {n: ("no result" if n not in recap else
                  f"unreachable={recap[n][0]} failed={recap[n][1]}")
              for n in names if recap.get(n, (1, 1)) != (0, 0)}
    label = f"Ansible, forks={forks}" if forks else "Ansible, default forks (5)"
    return Run(label, seats, wall, wall, cpu, 0.0, seats - len(failed), failed)


# -- the child processes ------------------------------------------------------------------

def child_ansible(control: Path, seconds_path: Path, playbook: list[str]) -> None:
    """Run ansible-playbook as a child subreaper, so that its CPU time is all counted.

    With ControlPersist (Ansible's default), each seat's first ssh forks a master
    connection into the background, which carries all later traffic to that seat and
    outlives ansible-playbook. Orphans come here instead of to init: once the playbook
    ends (its time is written to ``seconds_path``), the masters are closed and waited
    for, so this process's rusage, which the benchmark reads, includes them.
    """
    import ctypes

    pr_set_child_subreaper = 36  # <linux/prctl.h>
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_CHILD_SUBREAPER) refused")
    start = time.perf_counter()
    code = subprocess.run(playbook, check=False).returncode
    seconds_path.write_text(f"{time.perf_counter() - start}\n")
    for sock in control.iterdir():
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "seat"],
                       capture_output=True, check=False)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    sys.exit(code)


def child_provision(args: argparse.Namespace) -> None:
    """`labkit provision roster.csv`, exactly as the CLI runs it; on the way out, the API
    calls every labkit ``Aws`` counted and this process's peak memory."""
    import atexit
    from collections import Counter

    from labkit.aws import session

    clients: list[session.Aws] = []
    original = session.Aws.__init__

    def counting_init(self: session.Aws, *a: Any, **kw: Any) -> None:
        original(self, *a, **kw)
        clients.append(self)

    session.Aws.__init__ = counting_init  # type: ignore[method-assign]
    start = time.perf_counter()

    def report() -> None:
        calls: Counter[str] = Counter()
        for aws in clients:
            calls.update(aws.calls)
        self_ = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        Path(args.result).write_text(json.dumps({
            "calls": dict(calls.most_common()), "total_calls": sum(calls.values()),
            "maxrss_kb": self_, "children_maxrss_kb": children, "hwm_kb": peak_rss_kb(),
            "seconds": time.perf_counter() - start}))

    atexit.register(report)
    from labkit.cli import main as labkit_main

    labkit_main(["provision", "roster.csv"])


def child_fanout(args: argparse.Namespace) -> None:
    """labkit's fan-out for the first N seats, timed around ``bootstrap_seats`` alone."""
    from labkit.access import target_for
    from labkit.bootstrap import bootstrap_seats
    from labkit.config import load_config
    from labkit.state import Ledger

    course = Path(args.course)
    config = load_config(course / "labkit.toml")
    out = out_dir(course)
    ledger = Ledger.open(out / "state.json", config.session)
    names = seat_names(args.seats)
    targets = [target_for(config, ledger, out, n) for n in names]
    scripts = {n: (Path(args.scripts) / f"{n}.sh").read_text() for n in names}
    start = time.perf_counter()
    outcomes = bootstrap_seats(targets, scripts, Path(args.logs), parallel=PARALLEL,
                               wait_seconds=SSH_WAIT_SECONDS)
    seconds = time.perf_counter() - start
    Path(args.result).write_text(json.dumps({
        "seconds": seconds,
        "ok": sum(1 for o in outcomes.values() if o.ok),
        "failed": {s: o.reason for s, o in outcomes.items() if not o.ok},
        "seat_seconds": sorted(o.seconds for o in outcomes.values()),
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "hwm_kb": peak_rss_kb()}))


# -- the report ---------------------------------------------------------------------------

def machine() -> dict[str, str]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True,
                         check=False).stderr.strip()
    import fabric
    import paramiko

    revision = subprocess.run(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, check=False).stdout.strip()
    return {"labkit": revision or "unknown","nproc": str(len(os.sched_getaffinity(0))), "cpu": model,
            "memory": f"{mem_kb / 1024 / 1024:.0f} GiB", "python": platform.python_version(),
            "kernel": platform.release(), "openssh": ssh.split(",")[0],
            "fabric": f"Fabric {fabric.__version__}, Paramiko {paramiko.__version__}",
            "date": time.strftime("%Y-%m-%d")}


def ansible_version(cmd: str) -> str:
    first = subprocess.run([cmd, "--version"], capture_output=True, text=True,
                           check=False).stdout
    found = re.search(r"\[core ([^\]]+)\]", first)
    return f"ansible-core {found.group(1)}" if found else ""


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f} s"


def table(runs: dict[tuple[str, int], list[Run]], methods: list[str], sizes: list[int]
          ) -> list[str]:
    base = sizes[0]
    head = ["method"] + [f"{n} seat{'s' if n > 1 else ''}" for n in sizes] + \
        [f"{n}/{base}" for n in sizes[1:]] + \
        [f"CPU s at {sizes[-1]}: client / sandbox / rest of host"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for method in methods:
        cells = [method]
        med: dict[int, float] = {}
        for n in sizes:
            rs = runs.get((method, n), [])
            if not rs:
                cells.append("—")
                continue
            med[n] = statistics.median(r.seconds for r in rs)
            cell = fmt(med[n])
            if len(rs) > 1:
                cell += f" ({min(r.seconds for r in rs):.1f}–{max(r.seconds for r in rs):.1f})"
            bad = sum(len(r.failed) for r in rs)
            if bad:
                cell += f", {bad} failed"
            cells.append(cell)
        for n in sizes[1:]:
            cells.append(f"{med[n] / med[base]:.2f}" if n in med and base in med else "—")
        last = runs.get((method, sizes[-1]), [])
        cells.append(" / ".join(f"{statistics.median(getattr(r.cpu, part) for r in last):.1f}"
                                for part in ("client", "sandbox", "other")) if last else "—")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def figures_block(runs: dict[tuple[str, int], list[Run]], methods: list[str], sizes: list[int],
                  prov: dict[str, Any], n_prov: int, info: dict[str, str], ansible: str,
                  work: float, repeat: int, idle: tuple[CpuSplit, CpuSplit], total: float
                  ) -> list[str]:
    labkit = methods[0]
    largest = runs.get((labkit, sizes[-1]), [])
    smallest = runs.get((labkit, sizes[0]), [])
    if largest and smallest:
        ratio = (statistics.median(r.seconds for r in largest)
                 / statistics.median(r.seconds for r in smallest))
        verdict = f"**{ratio:.2f} ×, {'met' if ratio <= TARGET_RATIO else 'not met'}**."
    else:
        verdict = "not measured."
    lines = [
        (f"Each seat's bootstrap: labkit's rendered script, `sleep {work:g}` as its course "
         f"command. labkit: median of {repeat} runs (min–max); the others: one run each. "
         "Seconds are wall time of the bootstrap alone (for labkit, the `bootstrap_seats` "
         "call; for the others, the whole command)."),
        "",
        *table(runs, methods, sizes),
        "",
        f"- **Target** (labkit, {sizes[-1]} seats ≤ {TARGET_RATIO} × 1 seat): {verdict}",
    ]
    if largest:
        seat = statistics.median(statistics.median(r.seat_seconds) for r in largest)
        slow = statistics.median(max(r.seat_seconds) for r in largest)
        whole = statistics.median(r.command_seconds for r in largest)
        lines.append(
            f"- labkit at {sizes[-1]} seats, inside the fan-out: one seat's own connect + "
            f"upload + run took {seat:.1f} s (median seat), {slow:.1f} s (slowest seat); "
            f"the whole process, Python start included, {whole:.1f} s.")
    cpu: CpuSplit = prov["cpu"]
    calls = ", ".join(f"{k} {v}" for k, v in prov["calls"].items())
    memory = (f"- **Peak memory** (VmHWM): `labkit provision` of {n_prov} seats "
              f"**{prov['hwm_kb'] / 1024:.0f} MB** (`getrusage` maxrss "
              f"{prov['maxrss_kb'] / 1024:.0f} MB)")
    if largest:
        memory += (f"; the labkit fan-out process at {sizes[-1]} seats "
                   f"**{statistics.median(r.peak_rss_mb for r in largest):.0f} MB** "
                   f"(`getrusage` {statistics.median(r.maxrss_mb for r in largest):.0f} MB, "
                   "which cannot go below this benchmark's own peak: Linux hands a child "
                   "its parent's high-water mark at exec)")
    lines += [
        (f"- **`labkit provision` of {n_prov} seats** (launch, first bootstrap, outputs): "
         f"{prov['wall']:.0f} s in all, {cpu.client:.0f} CPU-s in labkit's process, "
         f"{cpu.sandbox:.0f} in the sandbox; its bootstrap phase (first seat's start to "
         f"last seat's end, from the seats' logs, whole seconds) "
         f"{fmt(prov['bootstrap_phase'])}. A first bootstrap also creates ~/venv, which the "
         "re-runs above find done."),
        (f"- **AWS API calls**: {prov['total_calls']} for {n_prov} seats = "
         f"**{prov['total_calls'] / n_prov:.2f} per seat** (provision's own summary, which "
         f"leaves out the plan's look-ups: {prov['summary_calls']}). By operation: "
         f"{calls}."),
        memory + ".",
        (f"- CPU seconds during a run (medians), all on the same {info['nproc']} CPUs: "
         "*client* = the bootstrapping command and its children (labkit: the whole process, "
         "Python start included); *sandbox* = the rest of the benchmark's process tree, "
         "i.e. the seats' sshd, sftp-server, bash, sudo..., plus moto and the AWS proxy; "
         "*rest of host* = every other process (/proc/stat's busy time minus the two)."),
        (f"- With nothing bootstrapping, the sandbox used {idle[0].sandbox:.2f} CPU-s per s "
         f"(its reconcile loop describing every instance each 0.3 s) and "
         f"{idle[1].sandbox:.2f} once the benchmark slowed that loop to 30 s for the "
         f"measurements; the rest of the host used {idle[0].other:.2f} and "
         f"{idle[1].other:.2f} CPU-s per s then."),
        (f"- Machine: `nproc` = {info['nproc']} ({info['cpu']}), {info['memory']} memory, "
         f"Python {info['python']}, Linux {info['kernel']}, {info['openssh']}, "
         f"{info['fabric']}{', ' + ansible if ansible else ''}; labkit at "
         f"{info['labkit']}; run on {info['date']}, {total / 60:.1f} min in all."),
    ]
    return lines


def write_readme(path: Path, block: list[str]) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    figures = "\n".join([BEGIN, *block, END])
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + figures + after
    else:
        text = text.rstrip("\n") + "\n\n" + SECTION + "\n\n" + figures + "\n"
    path.write_text(text)


# -- main -----------------------------------------------------------------------------------

def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_ansible":
        child_ansible(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
        return
    if len(sys.argv) > 1 and sys.argv[1] in ("_provision", "_fanout"):
        # A child of the benchmark: already in the sandbox network (it is inherited).
        child = argparse.ArgumentParser()
        child.add_argument("mode")
        for opt in ("--course", "--result", "--scripts", "--logs"):
            child.add_argument(opt)
        child.add_argument("--seats", type=int)
        cargs = child.parse_args()
        (child_provision if cargs.mode == "_provision" else child_fanout)(cargs)
        return

    # First thing, before any thread: the sandbox's private network.
    from labkit.errors import LabkitError
    from labkit.sandbox import Sandbox, enter_isolated_network

    try:
        enter_isolated_network()
    except LabkitError as e:
        raise SystemExit(f"cannot start the sandbox: {e}") from None

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64",
                        help="seat counts, smallest first (default 1,16,64)")
    parser.add_argument("--work", type=float, default=2.0,
                        help="seconds of simulated work in each bootstrap (default 2)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of labkit's fan-out per size; median reported (default 3)")
    parser.add_argument("--ansible-playbook", default=shutil.which("ansible-playbook") or "",
                        help="ansible-playbook to use (default: the one on PATH)")
    parser.add_argument("--skip-ssh-loop", action="store_true",
                        help="leave out the one-after-another ssh loop (the slowest)")
    parser.add_argument("--readme", default=str(README),
                        help="where to write the figures ('' to write none)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    started = time.perf_counter()

    info = machine()
    ansible = ansible_version(args.ansible_playbook) if args.ansible_playbook else ""
    work_dir = Path(tempfile.mkdtemp(prefix="labkit-bench-fanout-"))
    os.chmod(work_dir, 0o700)
    methods = ["labkit (Fabric, parallel=64)"]
    if not args.skip_ssh_loop:
        methods.append("ssh loop, one seat after another")
    if args.ansible_playbook:
        methods += ["Ansible, default forks (5)", "Ansible, forks=64"]
    else:
        print("ansible-playbook not found: the Ansible rows are left out "
              "(pip install ansible-core, then --ansible-playbook PATH)")
    runs: dict[tuple[str, int], list[Run]] = {}

    def record(run: Run) -> None:
        runs.setdefault((run.method, run.seats), []).append(run)
        note = f", FAILED {run.failed}" if run.failed else ""
        print(f"  {run.method:34} {run.seats:3} seats  {run.seconds:6.2f} s  "
              f"(command {run.command_seconds:.2f} s; CPU s: client {run.cpu.client:.1f}, "
              f"sandbox {run.cpu.sandbox:.1f}, rest of host {run.cpu.other:.1f}){note}",
              flush=True)

    try:
        with Sandbox(work_dir / "cloud", regions=[REGION]) as cloud:
            course = work_dir / "course"
            write_course(course, cloud, sizes[-1], args.work)
            print(f"provisioning {sizes[-1]} seats on the sandbox cloud ...", flush=True)
            prov = provision(course, cloud, work_dir)
            print(f"  provision: {prov['wall']:.1f} s, {prov['total_calls']} AWS API calls "
                  f"({prov['total_calls'] / sizes[-1]:.2f} per seat), peak RSS "
                  f"{prov['maxrss_kb'] / 1024:.0f} MB, bootstrap phase "
                  f"{fmt(prov['bootstrap_phase'])}", flush=True)
            scripts = work_dir / "scripts"
            hosts = render_scripts(course, scripts)
            idle = quiet_machine()
            for n in sizes:
                print(f"{n} seat(s):", flush=True)
                for i in range(args.repeat):
                    record(run_labkit(course, scripts, n, work_dir, f"{n}-{i}"))
                if not args.skip_ssh_loop:
                    record(run_ssh_loop(course, scripts, n, work_dir, str(n)))
                if args.ansible_playbook:
                    record(run_ansible(args.ansible_playbook, course, scripts, hosts, n, None,
                                       work_dir, f"{n}-default"))
                    record(run_ansible(args.ansible_playbook, course, scripts, hosts, n, 64,
                                       work_dir, f"{n}-64"))
    finally:
        if args.keep:
            print(f"work folder kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    total = time.perf_counter() - started
    block = figures_block(runs, methods, sizes, prov, sizes[-1], info, ansible, args.work,
                          args.repeat, idle, total)
    print()
    print("\n".join(block))
    if args.readme:
        write_readme(Path(args.readme), block)
        print(f"\nfigures written to {args.readme}")


if __name__ == "__main__":
    main()
