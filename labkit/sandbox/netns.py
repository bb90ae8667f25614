"""The sandbox's private network: a fresh network namespace with only loopback.

Everything the sandbox cloud runs (moto, the AWS proxy, every machine's sshd) and
everything the caller runs afterwards (labkit, ssh, tests) lives in this namespace,
so nothing the rehearsal does can reach the real AWS or the internet by mistake, and
the machines' public and private addresses can be given to ``lo`` without hijacking
any real address of the host.

The namespace's two shared resources are handed out here, process-wide (two sandboxes
in one process share the one network): addresses on ``lo`` (``claim_address``) and
the 127.0.0.1 port each machine's sshd also listens on (``claim_port``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import itertools
import os
import random
import socket
import subprocess
import threading

from labkit.errors import SandboxError

# From <sched.h> and <sys/mount.h>; Python 3.11 has no os.unshare.
_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18

_NEED_ROOT = ("the sandbox cloud needs root (or user namespaces) to create a network "
              "namespace; run as root or with sudo")

_isolated = False
_refusal = ""          # why entering failed, for the error a later Sandbox.start() gives
_lock = threading.Lock()


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def enter_isolated_network() -> None:
    """Move the calling process into a fresh network namespace with only loopback, up.

    A network namespace belongs to a thread, and threads started later inherit the
    namespace of the thread that starts them; so this must run in the main thread
    before any other thread exists, or those threads would stay on the host network.

    The process also gets a private mount namespace: the sandbox's disk tmpfs and any
    mount a machine leaks then disappear with the process even if it is killed, and
    never show on the host.

    Idempotent within a process. Raises SandboxError when the kernel refuses.
    """
    global _isolated, _refusal
    with _lock:
        if _isolated:
            return
        try:
            _enter()
        except SandboxError as exc:
            _refusal = str(exc)
            raise
        _isolated = True


def refusal() -> str:
    """Why the last enter_isolated_network() failed in this process ("" if it did not)."""
    return _refusal


def _enter() -> None:
    """Do the unsharing; the caller records success or the refusal."""
    if threading.current_thread() is not threading.main_thread() or threading.active_count() > 1:
        raise SandboxError(
            "the sandbox network must be entered before any thread starts",
            hint="call labkit.sandbox.enter_isolated_network() first thing in the "
                 "process (pytest: in pytest_configure)")
    libc = _libc()
    if libc.unshare(_CLONE_NEWNET | _CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        if err in (errno.EPERM, errno.EACCES, errno.EINVAL, errno.ENOSPC, errno.EUSERS):
            raise SandboxError(_NEED_ROOT)
        raise SandboxError(f"could not create the sandbox network namespace: {os.strerror(err)}")
    # Without this, mounts made here would propagate back to the host's namespace.
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"could not make the sandbox mounts private: {os.strerror(err)}")
    _run(["ip", "link", "set", "lo", "up"])
    # Machines bind their public and private addresses; allowing non-local binds
    # lets sshd start before or after the address is put on lo, in any order.
    try:
        with open("/proc/sys/net/ipv4/ip_nonlocal_bind", "w") as f:
            f.write("1\n")
    except OSError:
        pass


def is_isolated() -> bool:
    """Whether this process already entered the sandbox network (see enter_isolated_network)."""
    return _isolated


# address -> the machine holding it; process-wide, since two sandboxes in one process
# (a test's own beside a module's) share the one network.
_owners: dict[str, str] = {}
_blocks = itertools.count()


def claim_address(address: str, owner: str) -> bool:
    """Give ``lo`` the address for ``owner`` (an instance id); False if another has it.

    Only ever done inside the isolated namespace: on the host this would hijack a real
    internet address.
    """
    if not _isolated:
        raise SandboxError("refusing to add an address to lo outside the sandbox network")
    with _lock:
        holder = _owners.get(address)
        if holder not in (None, owner):
            return False
        _owners[address] = owner
    proc = subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 and not any(s in proc.stderr for s in ("File exists", "already assigned")):
        release_address(address, owner)
        raise SandboxError(f"could not add {address} to the sandbox network: {proc.stderr.strip()}")
    return True


def release_address(address: str, owner: str) -> None:
    """Take the owner's address off ``lo`` (its machine stopped or was terminated)."""
    with _lock:
        if _owners.get(address) != owner:
            return
        del _owners[address]
    subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"],
                   capture_output=True, check=False)


# 127.0.0.1 port -> the machine whose sshd listens there.
_ports: dict[int, str] = {}
_LOWEST_PORT = 10000


def claim_port(owner: str) -> int:
    """A free 127.0.0.1 TCP port for ``owner``'s sshd (an instance id), held until released.

    Chosen outside the kernel's ephemeral range: nothing in the sandbox network binds
    those ports but machines, so no outgoing connection (to moto, to another machine)
    can take the port between this choice and sshd binding it.
    """
    low, high = _ephemeral_range()
    spans = [(p, q) for p, q in ((_LOWEST_PORT, low - 1), (high + 1, 65535)) if p <= q]
    if not spans:
        spans = [(1024, 65535)]
    with _lock:
        for _ in range(500):
            first, last = random.choice(spans)
            port = random.randint(first, last)
            if port in _ports:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports[port] = owner
            return port
    raise SandboxError("no free loopback port for a sandbox machine's sshd")


def release_port(port: int, owner: str) -> None:
    """Give back ``owner``'s port (its machine stopped, failed or was terminated)."""
    with _lock:
        if _ports.get(port) == owner:
            del _ports[port]


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def public_block() -> int:
    """A number no other sandbox of this process got, to give its moto its own addresses."""
    return next(_blocks)


def _run(argv: list[str]) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise SandboxError(f"the sandbox needs {argv[0]!r} (Debian package iproute2)") from exc
    if proc.returncode != 0:
        raise SandboxError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
