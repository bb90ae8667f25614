"""One sandbox machine: the host's OS under a copy-on-write overlay, running a real sshd.

A machine is ``unshare --mount --pid --uts --ipc --fork --kill-child`` around a short
script that mounts an overlay with the host's root as the read-only lower layer and a
per-machine upper layer, gives it fresh /proc, /tmp and /run, pivots into it and runs
the seed's boot script, which ends as sshd (PID 1 of the machine). Killing that PID
takes the whole machine with it; the upper layer (the machine's "disk") stays until the
instance is terminated, so a stopped and restarted instance keeps its files.

Directories that are the instructor's rather than the OS's (/root, /home, /work, the
sandbox workdir, the current directory...) are made *opaque* in the upper layer: the
machine sees them empty, and what it writes there still persists like any other file.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import SandboxError

# Top-level directories of the OS: nothing under them is ever masked (a checkout under
# /usr/lib would otherwise hide Python from the machine). /tmp and /run are fresh tmpfs
# in every machine anyway.
_OS_TOP = frozenset({"usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
                     "boot", "proc", "sys", "dev", "run", "tmp"})
# Top-level directories that hold people's files, not the OS, on a Debian/Ubuntu host.
DEFAULT_MASKS = ("/root", "/home", "/work", "/srv", "/mnt", "/media", "/opt", "/var/tmp")

MACHINE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Runs as PID 1 of the machine's new namespaces, still seeing the host's files.
_OUTER_SCRIPT = r"""#!/bin/bash
# labkit sandbox machine init: PID 1 of new mount/PID/UTS/IPC namespaces, host view.
set -euo pipefail
disk=$1 seed=$2 wheelhouse=$3 hostname=$4
root=$disk/root
mkdir -p "$root"
# After a stop, the previous life of this disk may hold the overlay for a moment more;
# the kernel refuses a second overlay on a busy upper directory.
for attempt in $(seq 100); do
  if mount -t overlay overlay -o "lowerdir=/,upperdir=$disk/upper,workdir=$disk/work" "$root" 2>/dev/null; then
    break
  fi
  sleep 0.05
done
mountpoint -q "$root" || mount -t overlay overlay -o "lowerdir=/,upperdir=$disk/upper,workdir=$disk/work" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys" 2>/dev/null || true
mount --rbind /dev "$root/dev"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/dev/shm"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs "$root/run"
mkdir -m 1777 "$root/run/lock"
mkdir -m 700 "$root/run/labkit"
cp -r "$seed/." "$root/run/labkit/"
if [ -n "$wheelhouse" ]; then
  mkdir -p "$root/var/lib/labkit/wheelhouse"
  mount --bind "$wheelhouse" "$root/var/lib/labkit/wheelhouse"
  mount -o remount,bind,ro "$root/var/lib/labkit/wheelhouse"
fi
hostname "$hostname"
mkdir "$root/run/labkit/.host"
cd "$root"
pivot_root . run/labkit/.host
cd /
umount -l /run/labkit/.host
rmdir /run/labkit/.host
exec /bin/bash /run/labkit/boot.sh
"""


@dataclass(frozen=True)
class Machine:
    """A running sandbox machine, as tests and the CLI see it.

    ``root`` is the machine's own root directory seen from the sandbox process
    (``/proc/<pid>/root``): read it to inspect the machine's files without SSH.

    Its sshd listens on port 22 of ``addresses`` (on ``lo`` in the sandbox network) and
    on ``127.0.0.1:port``, where the sandbox's ssh_config maps those addresses and the
    instance id (``Host <public> <private> <id>`` / ``HostName 127.0.0.1`` / ``Port``).
    """

    instance_id: str
    region: str
    address: str                 # the public address if it has one, else the private one
    private_address: str
    port: int                    # sshd also listens on 127.0.0.1:<port>; new each boot
    pid: int                     # PID (in the sandbox's view) of the machine's PID 1
    root: Path
    log_path: Path
    dead_ssh: bool = False

    @property
    def addresses(self) -> tuple[str, ...]:
        """The machine's addresses: public (if any), then private. It answers on port 22
        of each it holds on ``lo`` (all of them, unless another machine had a private
        address first)."""
        return tuple(a for a in dict.fromkeys((self.address, self.private_address)) if a)


class Spawner:
    """Starts every child process of a sandbox from one long-lived thread.

    Children get PR_SET_PDEATHSIG(SIGKILL) through ``setpriv --pdeathsig``. The kernel
    fires it when the *thread* that forked the child ends, so spawning from short-lived
    pool threads would kill machines at random; one dedicated thread that ends only
    with the process (or with the sandbox) makes "the test run died" mean "every moto
    and sshd of it died", with no orphans left on the host.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="labkit-sandbox-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                    future.set_exception(exc)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """subprocess.Popen(argv) in the spawner thread, with the parent-death signal set."""
        future: Future[subprocess.Popen[bytes]] = Future()
        full = ["setpriv", "--pdeathsig", "KILL", "--", *argv]
        self._jobs.put((lambda: subprocess.Popen(full, **kwargs), future))
        return future.result()

    def close(self) -> None:
        """Let the thread end; only once every child it started has been stopped."""
        self._jobs.put(None)
        self._thread.join(timeout=5)


class MachineProcess:
    """The life of one instance's machine: its disk, its namespaces, its sshd."""

    def __init__(self, *, instance_id: str, region: str, disk: Path, home: Path) -> None:
        self.instance_id = instance_id
        self.region = region
        self.disk = disk              # upper/ work/ root/ on the sandbox's tmpfs
        self.home = home              # seed/ and console.log, in the workdir
        self.seed = home / "seed"
        self.log_path = home / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def prepare_disk(self, masks: Iterable[Path]) -> None:
        """Create the machine's empty disk once, with the instructor's directories opaque."""
        upper = self.disk / "upper"
        if upper.exists():
            return
        (self.disk / "work").mkdir(parents=True, exist_ok=True)
        upper.mkdir(parents=True)
        for path in masks:
            _make_opaque(upper, path)

    def start(self, spawner: Spawner, *, hostname: str, wheelhouse: Path | None) -> None:
        """Boot the machine; returns once its PID 1 exists (sshd comes up shortly after)."""
        self.home.mkdir(parents=True, exist_ok=True)
        init = self.home / "init.sh"          # a file, so `ps` shows a readable command line
        init.write_text(_OUTER_SCRIPT)
        with open(self.log_path, "ab") as log:     # the child keeps its own copy
            self.proc = spawner.popen(
                ["unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child",
                 "--propagation", "private",
                 "/bin/bash", str(init),
                 str(self.disk), str(self.seed), str(wheelhouse or ""), hostname],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                # A clean environment: nothing of the caller's (AWS keys above all) enters.
                env={"PATH": MACHINE_PATH, "LANG": "C.UTF-8"},
                cwd="/",
            )
        self.pid = self._wait_for_init()

    def _wait_for_init(self) -> int:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                text = children.read_text().split()
            except OSError:
                text = []
            if text:
                return int(text[0])
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        self.kill()
        raise SandboxError(f"machine {self.instance_id} did not start; see {self.log_path}")

    def alive(self) -> bool:
        """Whether the machine's namespaces still exist."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Stop the machine now, like pulling the plug; its disk stays."""
        self.send_kill()
        self.reap()

    def send_kill(self) -> None:
        """Pull the plug without waiting (so many machines can go down at once)."""
        # Killing PID 1 of the machine's PID namespace kills every process in it;
        # unshare then reaps it and exits, and we reap unshare: no orphans, no zombies.
        if self.proc is None:
            return
        target = self.pid or self.proc.pid
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reap(self) -> None:
        """Wait for the machine killed by send_kill to be gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        self.pid = 0

    def delete_disk(self) -> None:
        """Forget the machine's disk (the instance was terminated)."""
        shutil.rmtree(self.disk, ignore_errors=True)
        shutil.rmtree(self.seed, ignore_errors=True)


def default_masks(workdir: Path, extra: Iterable[Path] = ()) -> list[Path]:
    """The host directories a machine must not see: people's files, not the OS.

    Besides the usual top-level homes of people's files, this hides the sandbox workdir
    (host keys of every machine), the current directory and the checkout labkit runs
    from (the test tree, the instructor's roster), wherever they are.
    """
    here = Path(__file__).resolve().parents[2]
    candidates = [Path(p) for p in DEFAULT_MASKS]
    candidates += [workdir, Path.cwd(), here, *extra]
    masks: list[Path] = []
    for path in candidates:
        path = Path(os.path.abspath(path))
        if not _maskable(path):
            continue
        if not path.exists():
            continue
        if any(path == m or m in path.parents for m in masks):
            continue
        masks = [m for m in masks if path not in m.parents]
        masks.append(path)
    return masks


def _maskable(path: Path) -> bool:
    """Whether hiding ``path`` from machines leaves their OS whole."""
    parts = path.parts
    if len(parts) < 2 or parts[1] in _OS_TOP:
        return False
    # /var itself and /var/lib, /var/log... are the OS's; /var/tmp and deeper paths are not.
    return parts[1] != "var" or str(path) == "/var/tmp" or len(parts) >= 4


def _make_opaque(upper: Path, path: Path) -> None:
    """Make ``path`` an empty, writable directory in the machine, hiding the host's one."""
    current = upper
    host = Path("/")
    for part in path.parts[1:]:
        host = host / part
        current = current / part
        if not current.exists():
            current.mkdir()
            try:
                st = os.stat(host)
                os.chmod(current, st.st_mode & 0o7777)
                os.chown(current, st.st_uid, st.st_gid)
            except OSError:
                pass
    os.setxattr(current, "trusted.overlay.opaque", b"y")
