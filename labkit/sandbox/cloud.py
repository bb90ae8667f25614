"""The local sandbox cloud: moto plays AWS, and every running instance is a real machine.

``Sandbox`` runs, all on loopback inside the sandbox network (see ``netns``):

* moto's server, as a child process;
* an AWS proxy in front of it (``endpoint_url``), adding capacity and vCPU-quota
  failures, EC2's vCPU quota and Canonical's image parameters (see ``proxy``);
* a reconcile loop that keeps one machine (``machine``) per running instance: booted
  when moto says running, killed when stopped (its disk kept), deleted when
  terminated, restarted on reboot.

How a machine is reached: its sshd listens on two kinds of address at once.

* Port 22 of its public and its private address, which the sandbox puts on ``lo``
  while the machine runs, as a seat answers on EC2: ``ssh ubuntu@54.214.1.10`` works
  with no client config at all, and so does a name whose ``HostName`` is the address
  (the ``Host seat1 / HostName 54.214.1.10 / ... / Include <sandbox config>`` file
  labkit writes for a session).
* 127.0.0.1 on a port of its own (``Machine.port``, outside the ephemeral range, new
  each boot). ``ssh_config_path`` maps the machine's public address, private address
  and instance id to it::

      Host 54.214.1.10 10.0.3.4 i-0123
        HostName 127.0.0.1
        Port 40123
        HostKeyAlias 54.214.1.10
        User ubuntu

  so ``ssh -F <it> ubuntu@54.214.1.10`` (or ``...@10.0.3.4``, or ``i-0123``) and
  labkit with ``ssh_config = <it>`` (paramiko reads the file afresh per attempt and
  pins the host key under ``127.0.0.1`` and ``[127.0.0.1]:port``) go through the port;
  OpenSSH still checks the key under the public address (``HostKeyAlias``). The file
  is rewritten atomically (a new file renamed over the old) whenever a machine comes
  up, stops or is terminated, and so also when a start gives it a new address; a
  machine is in it from boot, before its sshd answers, as an instance has its address
  on EC2 before SSH is up.

Host patterns match the name given to ssh, not a ``HostName`` another file set, so the
session wrapper's ``Host seat1`` goes to the public address's port 22, not the port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3  # type: ignore[import-untyped]
import botocore.session  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from labkit.errors import SandboxError
from labkit.sandbox import netns
from labkit.sandbox.cloudinit import (
    SeedSettings,
    decode_user_data,
    describe,
    hostname_for,
    parse_user_data,
    write_seed,
)
from labkit.sandbox.machine import (
    MACHINE_PATH,
    Machine,
    MachineProcess,
    Spawner,
    default_masks,
)
from labkit.sandbox.proxy import AwsProxy, Knobs, ProxyHooks

SANDBOX_IMAGE_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-labkit-sandbox"
SANDBOX_KEY_ID = "AKIASANDBOXSANDBOX00"
SANDBOX_SECRET = "labkit-sandbox-not-a-secret"
_RECONCILE_EVERY = 0.3
_TOOLS = {"unshare": "util-linux", "setpriv": "util-linux", "nsenter": "util-linux",
          "ip": "iproute2", "/usr/sbin/sshd": "openssh-server"}


@dataclass(frozen=True)
class InstanceView:
    """What moto says about one instance; also what a dead_ssh predicate receives."""

    instance_id: str
    region: str
    state: str
    public_address: str
    private_address: str
    key_name: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def seat(self) -> str:
        """The seat name labkit tagged the instance with, if any."""
        return self.tags.get("labkit:seat", "")


DeadSsh = int | Collection[str] | Callable[[InstanceView], bool]


class Sandbox:
    """A local cloud for rehearsals and tests; see the module docstring.

    ``capacity`` and ``vcpu_quota`` (region -> count) stay live: change
    ``sandbox.capacity[region]`` while it runs and the next RunInstances obeys.
    ``dead_ssh`` picks machines whose SSH never answers: the first N instances to boot
    (an int), the seats or instance ids in a collection, or a predicate on InstanceView.
    ``wheelhouse`` is mounted read-only in every machine and pip is pointed at it
    (``no-index``), since machines have no network.
    """

    def __init__(self, workdir: Path, *, regions: Sequence[str] = (),
                 capacity: Mapping[str, int] | None = None,
                 vcpu_quota: Mapping[str, int] | None = None,
                 ssh_delay: float = 0.0, dead_ssh: DeadSsh = 0, login_user: str = "ubuntu",
                 wheelhouse: Path | None = None, hide: Iterable[Path] = ()) -> None:
        self.workdir = Path(os.path.abspath(workdir))
        self.regions = list(regions)
        self.knobs = Knobs(dict(capacity or {}), dict(vcpu_quota or {}))
        self.capacity = self.knobs.capacity
        self.vcpu_quota = self.knobs.vcpu_quota
        self.ssh_delay = ssh_delay
        self.dead_ssh = dead_ssh
        self.login_user = login_user
        self.wheelhouse = Path(os.path.abspath(wheelhouse)) if wheelhouse else None
        self.ssh_config_path = self.workdir / "ssh_config"
        self.endpoint_url = ""
        self._hide = list(hide)
        self._disks = self.workdir / "disks"
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._processes: dict[str, MachineProcess] = {}     # every instance with a disk
        self._machines: dict[str, Machine] = {}             # the running ones
        self._starting: set[str] = set()
        self._reboots: set[str] = set()
        self._dead: dict[str, bool] = {}
        self._boot_count = 0
        self._ports: dict[str, int] = {}                    # instance id -> its 127.0.0.1 port
        self._addresses: dict[str, list[str]] = {}          # instance id -> addresses on lo
        self._halting: set[str] = set()                     # being taken down right now
        self._failed: dict[str, str] = {}                   # instance id -> state it failed in
        self._seen_regions: set[str] = set()
        self._images: dict[str, str] = {}
        self._masks: list[Path] = []
        self._moto: subprocess.Popen[bytes] | None = None
        self._moto_port = 0
        self._proxy: AwsProxy | None = None
        self._spawner: Spawner | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._reconciler: threading.Thread | None = None
        self._disk_mounted = False
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> Self:
        """Start moto, the proxy and the reconcile loop; return once AWS calls work."""
        if self._started:
            return self
        _check_host()
        if not netns.is_isolated():
            if netns.refusal():
                raise SandboxError(netns.refusal())
            # Entering is only possible while the process has one thread; otherwise the
            # caller must have done it first thing (see enter_isolated_network).
            netns.enter_isolated_network()
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        self._disks.mkdir(exist_ok=True)
        # Machine disks live on a tmpfs: an overlay's upper layer cannot be on every
        # filesystem (not on overlayfs, as in many CI containers), and tmpfs can.
        _check(["mount", "-t", "tmpfs", "-o", "mode=700", "labkit-sandbox-disks", str(self._disks)],
               "could not mount the sandbox's disk tmpfs")
        self._disk_mounted = True
        self._masks = default_masks(self.workdir, self._hide)
        self._spawner = Spawner()
        self._start_moto()
        hooks = ProxyHooks(ec2_client=self._ec2, image_for=self.image_for,
                           instances_changed=self._instances_changed)
        self._proxy = AwsProxy(self._moto_port, self.knobs, hooks)
        self.endpoint_url = f"http://127.0.0.1:{self._proxy.start()}"
        for region in self.regions:
            self.image_for(region)
        self._write_ssh_config()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="labkit-sandbox-boot")
        self._reconciler = threading.Thread(target=self._reconcile_loop,
                                            name="labkit-sandbox-reconcile", daemon=True)
        self._reconciler.start()
        self._log(f"sandbox up: endpoint {self.endpoint_url}, regions {', '.join(self.regions) or '-'}")

    def _start_moto(self) -> None:
        self._moto_port = _free_port(set())
        package_root = str(Path(__file__).resolve().parents[2])
        env = {"PATH": os.environ.get("PATH", MACHINE_PATH), "LANG": "C.UTF-8",
               "LABKIT_SANDBOX_ADDRESS_BLOCK": str(netns.public_block()),
               "PYTHONPATH": os.pathsep.join([package_root, *sys.path[1:]]),
               "HOME": str(self.workdir), "AWS_ACCESS_KEY_ID": SANDBOX_KEY_ID,
               "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET, "MOTO_ALLOW_NONEXISTENT_REGION": "false"}
        assert self._spawner is not None
        with open(self.workdir / "moto.log", "ab") as log:    # the child keeps its own copy
            self._moto = self._spawner.popen(
                [sys.executable, "-m", "labkit.sandbox.motoserver", "-H", "127.0.0.1",
                 "-p", str(self._moto_port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._moto.poll() is not None:
                raise SandboxError(f"moto's server exited at start; see {self.workdir / 'moto.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self._moto_port), timeout=1) as s:
                    s.sendall(b"GET /moto-api/ HTTP/1.0\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/"):
                        return
            except OSError:
                time.sleep(0.05)
        raise SandboxError(f"moto's server did not answer in 60 s; see {self.workdir / 'moto.log'}")

    def stop(self) -> None:
        """Kill every machine, the proxy and moto; unmount and remove what they used."""
        if not self._started:
            return
        started = time.monotonic()
        self._stopping.set()
        self._wake.set()
        if self._reconciler is not None:
            self._reconciler.join(timeout=10)
            self._reconciler = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            process.send_kill()
        for process in processes:
            process.reap()
        for instance_id, addresses in self._addresses.items():
            for address in addresses:
                netns.release_address(address, instance_id)
        self._addresses.clear()
        for instance_id, port in self._ports.items():
            netns.release_port(port, instance_id)
        self._ports.clear()
        self._machines.clear()
        self._processes.clear()
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self._moto is not None:
            self._moto.terminate()
            try:
                self._moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._moto.kill()
                self._moto.wait(timeout=10)
            self._moto = None
        if self._spawner is not None:
            self._spawner.close()
            self._spawner = None
        if self._disk_mounted:
            result = subprocess.run(["umount", str(self._disks)], capture_output=True, check=False)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", str(self._disks)], capture_output=True, check=False)
            self._disk_mounted = False
        shutil.rmtree(self._disks, ignore_errors=True)
        self._write_ssh_config()
        self._log(f"sandbox stopped in {time.monotonic() - started:.1f} s")
        self._clients.clear()
        self._started = False
        self._stopping.clear()

    # -- what callers use ------------------------------------------------------------

    def aws_env(self) -> dict[str, str]:
        """The variables that point boto3 (and the AWS CLI) at the sandbox; add to a copy of
        os.environ without AWS_* (see ``environ``). Never touches os.environ itself."""
        if not self.endpoint_url:
            raise SandboxError("the sandbox is not started")
        empty = self.workdir / "aws-config-empty"
        empty.touch()
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": SANDBOX_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET,
            "AWS_DEFAULT_REGION": self.regions[0] if self.regions else "us-east-1",
            # The instructor's ~/.aws must not steer a rehearsal (profiles, endpoints).
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A whole environment for a child process: ``base`` (default os.environ) without
        any AWS_* variable, plus ``aws_env()``."""
        source = os.environ if base is None else base
        env = {k: v for k, v in source.items() if not k.startswith("AWS_")}
        env.update(self.aws_env())
        return env

    def machines(self) -> dict[str, Machine]:
        """instance id -> machine, for every instance that has a running machine."""
        with self._lock:
            return dict(self._machines)

    def machine(self, instance_id: str, timeout: float = 30.0) -> Machine:
        """The instance's machine, waiting for the reconcile loop to boot it."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = self._machines.get(instance_id)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise SandboxError(f"no machine for {instance_id} after {timeout:.0f} s; "
                                   f"see {self.workdir / 'sandbox.log'}")
            self._wake.set()
            time.sleep(0.05)

    def wait_for_ssh(self, instance_ids: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until each instance's sshd sends its banner both ways it is reached: on
        port 22 of its address and on 127.0.0.1:<its port> (where ssh_config sends it)."""
        deadline = time.monotonic() + timeout
        for instance_id in instance_ids:
            machine = self.machine(instance_id, max(deadline - time.monotonic(), 0.1))
            routes = [(a, 22) for a in (machine.address,) if a] + [("127.0.0.1", machine.port)]
            for address, port in routes:
                while not ssh_answers(address, port):
                    if time.monotonic() > deadline:
                        raise SandboxError(f"{instance_id}: SSH did not answer at {address}:{port} "
                                           f"in {timeout:.0f} s; see {machine.log_path}")
                    time.sleep(0.05)

    def wait_until_gone(self, instance_id: str, timeout: float = 30.0) -> None:
        """Wait for the reconcile loop to take the instance's machine down: out of
        ssh_config, its processes dead, its addresses off ``lo``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if instance_id not in self._machines and instance_id not in self._halting:
                    return
            if time.monotonic() > deadline:
                raise SandboxError(f"the machine of {instance_id} is still up after {timeout:.0f} s")
            self._wake.set()
            time.sleep(0.05)

    def run_in(self, instance_id: str, argv: Sequence[str], *, input: str | None = None,
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside a machine (its namespaces, its root), for tests.

        The command gets a clean environment, like a login on the machine would.
        """
        machine = self.machines().get(instance_id)
        if machine is None:
            raise SandboxError(f"{instance_id} has no running machine")
        return subprocess.run(
            ["nsenter", "-t", str(machine.pid), "-m", "-u", "-i", "-p", "-r", "-w", "--",
             "env", "-i", f"PATH={MACHINE_PATH}", "LANG=C.UTF-8", "HOME=/root", *argv],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
            env={"PATH": MACHINE_PATH})

    def images(self) -> dict[str, str]:
        """region -> the sandbox image's AMI id, for every region the sandbox knows."""
        for region in self.regions:
            self.image_for(region)
        with self._lock:
            return dict(self._images)

    def image_for(self, region: str) -> str:
        """The sandbox image in ``region``, registered with moto on first use.

        It stands for Ubuntu 24.04: machines run the host's OS whatever the image says.
        Canonical's SSM parameter for 24.04 (and any /aws/service/canonical/ubuntu/...
        /ami-id) resolves to it through the proxy.
        """
        with self._lock:
            if region in self._images:
                return self._images[region]
            client = self._ec2(region)
            found = client.describe_images(Owners=["self"], Filters=[
                {"Name": "name", "Values": [SANDBOX_IMAGE_NAME]}])["Images"]
            if found:
                image = found[0]["ImageId"]
            else:
                image = client.register_image(
                    Name=SANDBOX_IMAGE_NAME, Architecture="x86_64", RootDeviceName="/dev/sda1",
                    VirtualizationType="hvm", EnaSupport=True,
                    Description="labkit sandbox: Ubuntu 24.04 stand-in (the host's OS, "
                                "copy-on-write, one sshd per machine)")["ImageId"]
            self._images[region] = str(image)
            return str(image)

    # -- the reconcile loop ----------------------------------------------------------

    def _instances_changed(self, region: str, action: str, instance_ids: list[str]) -> None:
        with self._lock:
            self._seen_regions.add(region)
            if action == "RebootInstances":
                self._reboots.update(instance_ids)
        self._wake.set()

    def _reconcile_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(_RECONCILE_EVERY)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._reconcile()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a bad moment of moto's
                self._log(f"reconcile failed: {exc!r}")
                time.sleep(_RECONCILE_EVERY)

    def _reconcile(self) -> None:
        with self._lock:
            regions = sorted(set(self.regions) | self._seen_regions)
        views: dict[str, InstanceView] = {}
        for region in regions:
            for view in self._describe(region):
                views[view.instance_id] = view
        with self._lock:
            known = dict(self._processes)
            running = set(self._machines)
            starting = set(self._starting)
            reboots, self._reboots = self._reboots, set()
        for instance_id, view in views.items():
            with self._lock:
                if self._failed.get(instance_id) not in (None, view.state):
                    del self._failed[instance_id]
                failed = instance_id in self._failed
            if view.state == "running" and failed:
                continue
            if view.state == "running":
                with self._lock:
                    machine = self._machines.get(instance_id)
                moved = (machine is not None and bool(view.public_address)
                         and machine.address != view.public_address)
                if moved and instance_id in running:
                    # An Elastic IP was attached: the machine answers on its new address
                    # (its sshd restarts there; the disk is kept, as on EC2).
                    self._halt(instance_id, delete=False)
                    running.discard(instance_id)
                elif instance_id in reboots and instance_id in running:
                    self._halt(instance_id, delete=False)
                    running.discard(instance_id)
                if instance_id not in running and instance_id not in starting:
                    with self._lock:
                        self._starting.add(instance_id)
                    assert self._pool is not None
                    self._pool.submit(self._boot_guarded, view)
            elif instance_id in running or (view.state == "terminated" and instance_id in known):
                self._halt(instance_id, delete=view.state == "terminated")
        for instance_id in set(known) - set(views):
            self._halt(instance_id, delete=True)

    def _describe(self, region: str) -> list[InstanceView]:
        views: list[InstanceView] = []
        for page in self._ec2(region).get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for item in reservation["Instances"]:
                    views.append(InstanceView(
                        instance_id=item["InstanceId"], region=region,
                        state=item["State"]["Name"],
                        public_address=item.get("PublicIpAddress", "") or "",
                        private_address=item.get("PrivateIpAddress", "") or "",
                        key_name=item.get("KeyName", "") or "",
                        tags={t["Key"]: t["Value"] for t in item.get("Tags", [])}))
        return views

    def _boot_guarded(self, view: InstanceView) -> None:
        try:
            self._boot(view)
        except Exception as exc:  # noqa: BLE001 - logged; the instance just stays unreachable
            # Like an instance whose boot failed on EC2: it stays "running" and unreachable;
            # a stop and start tries again (rather than retrying every 0.3 s here).
            self._log(f"{view.instance_id}: could not boot: {exc}")
            with self._lock:
                self._failed[view.instance_id] = view.state
                for address in self._addresses.pop(view.instance_id, []):
                    netns.release_address(address, view.instance_id)
                port = self._ports.pop(view.instance_id, None)
                if port is not None:
                    netns.release_port(port, view.instance_id)
                process = self._processes.get(view.instance_id)
            if process is not None:
                process.kill()
        finally:
            with self._lock:
                self._starting.discard(view.instance_id)

    def _boot(self, view: InstanceView) -> None:
        if self._stopping.is_set():
            return
        client = self._ec2(view.region)
        authorized: list[str] = []
        if view.key_name:
            try:
                pairs = client.describe_key_pairs(KeyNames=[view.key_name], IncludePublicKey=True)
                authorized = [p["PublicKey"] for p in pairs["KeyPairs"] if p.get("PublicKey")]
            except client.exceptions.ClientError:
                self._log(f"{view.instance_id}: key pair {view.key_name!r} is gone; no login key")
        raw = client.describe_instance_attribute(InstanceId=view.instance_id, Attribute="userData")
        config = parse_user_data(decode_user_data(raw.get("UserData", {}).get("Value")))
        dead = self._is_dead(view)
        mine: list[str] = []
        for address in (view.public_address, view.private_address):
            if not address:
                continue
            if netns.claim_address(address, view.instance_id):
                mine.append(address)
            else:
                # Private addresses of two regions' default VPCs may coincide, on EC2 too;
                # in the one sandbox network the first machine keeps it.
                self._log(f"{view.instance_id}: {address} belongs to another machine; "
                          "this one is not reachable there")
        with self._lock:
            self._addresses[view.instance_id] = mine
            old = self._ports.pop(view.instance_id, None)
            if old is not None:
                netns.release_port(old, view.instance_id)
            port = netns.claim_port(view.instance_id)
            self._ports[view.instance_id] = port
            listen = [f"127.0.0.1:{port}", *(f"{a}:22" for a in mine)]
            process = self._processes.get(view.instance_id) or MachineProcess(
                instance_id=view.instance_id, region=view.region,
                disk=self._disks / view.instance_id,
                home=self.workdir / "machines" / view.instance_id)
            self._processes[view.instance_id] = process
        hostname = hostname_for(view.private_address, view.instance_id)
        write_seed(process.seed, SeedSettings(
            instance_id=view.instance_id, hostname=hostname, login_user=self.login_user,
            listen=listen, ssh_delay=self.ssh_delay, dead_ssh=dead,
            wheelhouse=self.wheelhouse is not None), config, authorized)
        process.prepare_disk(self._masks)
        with open(process.log_path, "a") as log:
            log.writelines(f"labkit-sandbox[{view.instance_id}]: {line}\n" for line in describe(config))
        assert self._spawner is not None
        if self._stopping.is_set():
            return
        process.start(self._spawner, hostname=hostname, wheelhouse=self.wheelhouse)
        machine = Machine(
            instance_id=view.instance_id, region=view.region,
            address=view.public_address or view.private_address,
            private_address=view.private_address, port=port, pid=process.pid,
            root=Path(f"/proc/{process.pid}/root"), log_path=process.log_path, dead_ssh=dead)
        with self._lock:
            self._machines[view.instance_id] = machine
            self._write_ssh_config()
        self._log(f"{view.instance_id} ({view.region}) up at {', '.join(mine) or '-'}, "
                  f"127.0.0.1:{port}{' (dead SSH)' if dead else ''}")

    def _halt(self, instance_id: str, *, delete: bool) -> None:
        # Out of ssh_config first, then down; wait_until_gone returns only after both.
        with self._lock:
            self._halting.add(instance_id)
            self._machines.pop(instance_id, None)
            process = self._processes.get(instance_id)
            if delete:
                self._processes.pop(instance_id, None)
            addresses = self._addresses.pop(instance_id, [])
            port = self._ports.pop(instance_id, None)
            self._write_ssh_config()
        try:
            if process is not None:
                process.kill()
                if delete:
                    process.delete_disk()
            for address in addresses:
                netns.release_address(address, instance_id)
            if port is not None:
                netns.release_port(port, instance_id)
        finally:
            with self._lock:
                self._halting.discard(instance_id)
        self._log(f"{instance_id} {'deleted' if delete else 'stopped'}")

    def _is_dead(self, view: InstanceView) -> bool:
        with self._lock:
            if view.instance_id in self._dead:
                return self._dead[view.instance_id]
            rule = self.dead_ssh
            if isinstance(rule, bool):
                dead = rule
            elif isinstance(rule, int):
                dead = self._boot_count < rule
            elif callable(rule):
                dead = bool(rule(view))
            else:
                dead = view.instance_id in rule or (bool(view.seat) and view.seat in rule)
            self._boot_count += 1
            self._dead[view.instance_id] = dead
            return dead

    # -- helpers ---------------------------------------------------------------------

    def _ec2(self, region: str) -> Any:
        """A boto3 EC2 client talking to moto directly, one per region.

        Clients are thread-safe and cost ~0.3 s to create, so they are shared (the
        proxy serves every connection from a new thread). Their session is built here,
        alone, from /dev/null config files: the caller's profiles, keys and
        AWS_ENDPOINT_URL must not leak in.
        """
        with self._clients_lock:
            client = self._clients.get(region)
            if client is None:
                core = botocore.session.Session()
                core.set_config_variable("config_file", os.devnull)
                core.set_config_variable("credentials_file", os.devnull)
                core.set_config_variable("profile", None)
                session = boto3.session.Session(
                    aws_access_key_id=SANDBOX_KEY_ID, aws_secret_access_key=SANDBOX_SECRET,
                    region_name=region, botocore_session=core)
                client = session.client(
                    "ec2", endpoint_url=f"http://127.0.0.1:{self._moto_port}",
                    config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                  connect_timeout=5, read_timeout=60,
                                  max_pool_connections=32))
                self._clients[region] = client
            return client

    def _write_ssh_config(self) -> None:
        """Rewrite ssh_config_path atomically: a reader never sees half a file.

        Called on every change of the running machines, with the lock held throughout,
        so the last file written is always the one for the current machines.
        """
        with self._lock:
            text = ssh_config_text(self._machines.values(), self._addresses, self.login_user)
            self.workdir.mkdir(parents=True, exist_ok=True)
            tmp = self.ssh_config_path.with_name(f".{self.ssh_config_path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, self.ssh_config_path)

    def _log(self, message: str) -> None:
        with self._lock:
            try:
                with open(self.workdir / "sandbox.log", "a") as f:
                    f.write(f"{time.strftime('%H:%M:%S')} {message}\n")
            except OSError:
                pass


_SSH_CONFIG_HEADER = """\
# labkit sandbox: how to reach each machine; rewritten whenever one comes up, stops or
# is terminated (a start may give it a new address).
# Every machine's sshd listens on 127.0.0.1 at the Port below, and the Host line maps
# its public address, private address and instance id there:
# `ssh -F <this file> ubuntu@<address>` and labkit (ssh_config = this file) use it.
# OpenSSH checks the host key under the public address (HostKeyAlias).
# The same sshd also listens on port 22 of those addresses (on lo in the sandbox
# network), so a name that matches no Host line here but has the address as HostName
# (a seat in labkit's session ssh_config, which Includes this file) goes there.
"""


def ssh_config_text(machines: Iterable[Machine], held: Mapping[str, Sequence[str]],
                    login_user: str) -> str:
    """The sandbox's OpenSSH client config for these machines (see the module docstring).

    ``held`` is instance id -> the addresses it holds on ``lo``. An address two machines
    share (private addresses of two regions' default VPCs may coincide) is listed once,
    for the machine holding it, so ``ssh <address>`` reaches the same machine both ways.
    """
    ordered = sorted(machines, key=lambda m: (m.region, m.instance_id))
    owner: dict[str, str] = {}
    for m in ordered:
        for address in held.get(m.instance_id, ()):
            owner.setdefault(address, m.instance_id)
    for m in ordered:
        for address in m.addresses:
            owner.setdefault(address, m.instance_id)
    blocks = [_SSH_CONFIG_HEADER]
    for m in ordered:
        names = [a for a in m.addresses if owner[a] == m.instance_id]
        lo = ", ".join(f"{a}:22" for a in held.get(m.instance_id, ())) or "no address on lo"
        lines = [f"# {m.instance_id} ({m.region}): sshd on 127.0.0.1:{m.port}; {lo}"]
        lines += [f"# {a} is another machine's here" for a in m.addresses if a not in names]
        if m.dead_ssh:
            lines.append("# SSH never answers on this machine (dead_ssh)")
        lines += [f"Host {' '.join([*names, m.instance_id])}",
                  "  HostName 127.0.0.1",
                  f"  Port {m.port}"]
        if m.address:
            lines.append(f"  HostKeyAlias {m.address}")
        lines.append(f"  User {login_user}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def ssh_answers(address: str, port: int, timeout: float = 1.0) -> bool:
    """Whether an SSH server at address:port sends its version banner."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _free_port(taken: set[int]) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port
    raise SandboxError("no free loopback port for a sandbox machine")


def _check(argv: list[str], message: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"{message}: {result.stderr.strip()}")


def _check_host() -> None:
    """Fail early, in plain words, when this host cannot run machines."""
    if os.geteuid() != 0:
        raise SandboxError("the sandbox cloud needs root to run machines (mount and PID "
                           "namespaces, sshd); run as root or with sudo")
    missing = [f"{tool} (Debian package {package})" for tool, package in _TOOLS.items()
               if shutil.which(tool) is None]
    if missing:
        raise SandboxError("the sandbox cloud needs " + ", ".join(missing),
                           hint="install them with apt-get, or run scripts/setup")

