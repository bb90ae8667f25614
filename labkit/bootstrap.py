"""SSH to seats with Fabric: pinned host keys, many seats at once, one result per seat.

Host keys: labkit generated every seat's host key and put it in the seat's user-data, so
a connection accepts exactly that key and refuses any other (paramiko ``RejectPolicy``;
Fabric's default policy would add any unknown key). The OpenSSH client config (``ssh_config``
in labkit.toml: a ProxyJump, or the sandbox's address map) is read afresh on every
connection attempt, because it may change while seats come up.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import fabric
import fabric.runners
import paramiko

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """How to reach one seat."""

    seat: str
    host: str
    username: str
    host_key: str  # "ssh-ed25519 AAAA..." that the seat must present
    key_file: Path  # the session's private key
    ssh_config: str = ""  # optional OpenSSH client config path


@dataclass(frozen=True)
class Outcome:
    seat: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0


class SshFailure(Exception):
    """A seat could not be reached or refused us; the message is for the summary."""


class SshUnreachable(SshFailure):
    """Nothing answered (yet): worth another try until the seat's deadline."""

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(f"SSH not answering at {host}: {detail}")
        self.detail = detail


def _why_unreachable(e: BaseException, timeout: float) -> str:
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
        return "connection refused on port 22"
    if isinstance(e, TimeoutError):
        return f"no answer in {timeout:.0f} s"
    if isinstance(e, EOFError):
        return "the connection closed before the SSH greeting"
    return str(e) or type(e).__name__


_parsed: dict[str, tuple[tuple[int, int, int], paramiko.SSHConfig]] = {}
_parsed_lock = threading.Lock()


def _ssh_config(path: str) -> paramiko.SSHConfig:
    """The client config as the file is *now*: checked on every connection attempt, parsed
    again whenever it changed (size, mtime or inode), so a rewrite is always seen while 64
    seats' attempts do not each parse an unchanged file."""
    if not path:
        return paramiko.SSHConfig()
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _parsed_lock:
        cached = _parsed.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    parsed = paramiko.SSHConfig.from_path(path)
    with _parsed_lock:
        _parsed[path] = (stamp, parsed)
    return parsed


class _QuietRemote(fabric.runners.Remote):
    """Fabric's remote runner polls for input every 10 ms per seat; labkit sends none
    (``in_stream=False``), so a slower poll saves a third of the client's CPU at 64 seats."""

    input_sleep = 0.1


def connection(target: Target, *, password: str | None = None,
               timeout: float = 10.0) -> fabric.Connection:
    """A Fabric connection (not yet open) that accepts only the seat's pinned host key."""
    config = fabric.Config(ssh_config=_ssh_config(target.ssh_config),
                           overrides={"runners": {"remote": _QuietRemote}})
    config.load_ssh_configs = False
    kwargs: dict[str, object] = {"look_for_keys": False, "allow_agent": False,
                                 "banner_timeout": timeout, "auth_timeout": timeout}
    if password is not None:
        kwargs["password"] = password
    else:
        kwargs["key_filename"] = str(target.key_file)
    conn = fabric.Connection(target.host, user=target.username, config=config,
                             connect_timeout=int(max(1, timeout)), connect_kwargs=kwargs)
    pin_host_key(conn.client, target.host_key, [conn.host, target.host], conn.port)
    return conn


def pin_host_key(client: paramiko.SSHClient, public_openssh: str, names: Sequence[str],
                 port: int) -> None:
    """Trust exactly ``public_openssh`` for these names, reject every unknown key."""
    keytype, blob = public_openssh.split()[:2]
    key = paramiko.PKey.from_type_string(keytype, base64.b64decode(blob))
    keys = client.get_host_keys()
    for name in set(names):
        keys.add(name, keytype, key)
        keys.add(f"[{name}]:{port}", keytype, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


def open_connection(target: Target, *, password: str | None = None,
                    timeout: float = 10.0) -> fabric.Connection:
    """One attempt; every failure becomes an ``SshFailure`` with a plain reason."""
    conn = connection(target, password=password, timeout=timeout)
    try:
        conn.open()
        return conn
    except paramiko.BadHostKeyException as e:
        conn.close()
        raise SshFailure(f"host key mismatch: the machine at {target.host} presented "
                         f"{e.key.get_name()} {e.key.fingerprint}, not the key labkit "
                         "generated for this seat; refusing to connect") from None
    except paramiko.SSHException as e:
        conn.close()
        if "not found in known_hosts" in str(e) or "Server" in str(e) and "not found" in str(e):
            raise SshFailure(f"unknown host key at {target.host}; refusing to connect") from None
        raise SshFailure(f"SSH error: {e}") from None
    except (OSError, EOFError) as e:  # timeouts and refusals are OSErrors
        conn.close()
        raise SshUnreachable(target.host, _why_unreachable(e, timeout)) from None


def is_auth_failure(e: BaseException) -> bool:
    return "Authentication failed" in str(e) or isinstance(e, paramiko.AuthenticationException)


def wait_for_ssh(target: Target, *, deadline: float, stop: threading.Event | None = None
                 ) -> fabric.Connection:
    """Retry with bounded exponential backoff until the seat answers or ``deadline``."""
    delay = 1.0
    last = "no attempt made"
    started = time.monotonic()
    while True:
        try:
            return open_connection(target, timeout=min(10.0, max(1.0, deadline - time.monotonic())))
        except SshUnreachable as e:
            last = e.detail
        except SshFailure as e:
            if "host key mismatch" in str(e) or "unknown host key" in str(e):
                raise
            last = str(e)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            raise SshFailure(f"SSH never answered at {target.host} in "
                             f"{time.monotonic() - started:.0f} s (last try: {last})")
        time.sleep(min(delay * (0.5 + random.random()), remaining))
        delay = min(delay * 2, 10.0)


def run_script(conn: fabric.Connection, script: str, log_path: Path, *,
               timeout: float | None = None) -> None:
    """Upload ``script`` to a private file on the seat, run it, keep its output in a log.

    The script travels over SFTP rather than the command line, so nothing in it (password
    hashes, signed URLs) ever shows up in a process list.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    remote = ".labkit-bootstrap.sh"
    sftp = conn.sftp()
    with sftp.open(remote, "w") as f:
        f.chmod(0o700)
        f.write(script)
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(f"--- bootstrap started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        out.flush()
        try:
            result = conn.run(f"bash ~/{remote}; rc=$?; rm -f ~/{remote}; exit $rc",
                              hide=True, warn=True, in_stream=False, out_stream=out,
                              err_stream=out, timeout=timeout, pty=False)
        finally:
            out.write(f"--- bootstrap ended {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    if result.exited != 0:
        tail = _last_lines(log_path, 3)
        raise SshFailure(f"bootstrap script failed (exit {result.exited}); see "
                         f"{log_path}: {tail}")


def _last_lines(path: Path, n: int) -> str:
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()
             if ln.strip() and not ln.startswith("--- bootstrap")]
    return " | ".join(lines[-n:])


def fan_out(targets: Sequence[Target], work: Callable[[Target], None], *, parallel: int,
            on_done: Callable[[Outcome], None] | None = None) -> dict[str, Outcome]:
    """Run ``work`` for every target, ``parallel`` at a time; one outcome per seat.

    A slow or failing seat never holds up or aborts the others.
    """
    outcomes: dict[str, Outcome] = {}

    def one(target: Target) -> Outcome:
        start = time.monotonic()
        try:
            work(target)
            outcome = Outcome(target.seat, True, seconds=time.monotonic() - start)
        except SshFailure as e:
            outcome = Outcome(target.seat, False, str(e), time.monotonic() - start)
        except Exception as e:  # one seat's surprise must not stop the class
            log.exception("seat %s", target.seat)
            outcome = Outcome(target.seat, False, f"{type(e).__name__}: {e}",
                              time.monotonic() - start)
        if on_done:
            on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for outcome in pool.map(one, targets):
            outcomes[outcome.seat] = outcome
    return outcomes


def password_login(target: Target, password: str, *, timeout: float = 15.0,
                   command: str = "id -un") -> str:
    """Log in the way a student does (password, pinned host key); return the output."""
    conn = open_connection(target, password=password, timeout=timeout)
    try:
        result = conn.run(command, hide=True, warn=True, in_stream=False)
        return str(result.stdout).strip()
    finally:
        conn.close()


def bootstrap_seats(targets: Sequence[Target], scripts: Mapping[str, str], logs_dir: Path, *,
                    parallel: int, wait_seconds: float,
                    on_event: Callable[[str, str], None] | None = None) -> dict[str, Outcome]:
    """Wait for SSH and run each seat's script; ``on_event(seat, "ssh"|"ok"|"failed")``."""

    def work(target: Target) -> None:
        conn = wait_for_ssh(target, deadline=time.monotonic() + wait_seconds)
        try:
            if on_event:
                on_event(target.seat, "ssh")
            run_script(conn, scripts[target.seat], logs_dir / f"{target.seat}.log")
        finally:
            conn.close()

    def done(outcome: Outcome) -> None:
        if on_event:
            on_event(outcome.seat, "ok" if outcome.ok else "failed")

    return fan_out(targets, work, parallel=parallel, on_done=done)
