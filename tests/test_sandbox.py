"""The sandbox cloud behaves like the EC2 seats labkit provisions.

These tests drive the emulator itself (labkit.sandbox), so boto3 here is the "AWS
client" and the assertions are about what a student or labkit would notice on a
machine: it answers SSH at its address with the host key from its user-data, sudo
works and stays on that machine, a stopped machine keeps its files, a terminated one
is gone, and the instructor's secrets never show inside.

Each machine is reached two ways, and both are tested: port 22 of its public and
private address (on lo in the sandbox network: plain ``ssh``, and labkit's per-seat
``Host seat1 / HostName <address>`` wrapper), and 127.0.0.1:<its port>, where the
sandbox's ssh_config maps its addresses and instance id (paramiko's lookup, labkit's
own ``open_connection``, ``ssh -F`` with HostKeyAlias).
"""

from __future__ import annotations

import base64
import io
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import paramiko
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from labkit.bootstrap import SshFailure, Target, open_connection
from labkit.sandbox import Machine, Sandbox, ssh_answers
from labkit.sandbox.cloud import ssh_config_text

REGIONS = ("eu-west-1", "us-east-1")
UBUNTU_2404 = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
FLEET_SIZE = 20
SECRET_MARKER = f"labkit-test-secret-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class KeyPair:
    private_openssh: str
    public_openssh: str

    @property
    def paramiko(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key(io.StringIO(self.private_openssh))

    @property
    def public_blob(self) -> paramiko.PKey:
        kind, data = self.public_openssh.split()[:2]
        return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def new_key() -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(private, public)


def user_data(host_key: KeyPair) -> str:
    """The shape of labkit's user-data: host keys it generated, nothing else needed."""
    return "#cloud-config\n" + yaml.safe_dump(
        {"ssh_keys": {"ed25519_private": host_key.private_openssh,
                      "ed25519_public": host_key.public_openssh}})


def ec2(cloud: Sandbox, region: str, **config: Any) -> Any:
    return boto3.client("ec2", region_name=region, endpoint_url=cloud.endpoint_url,
                        aws_access_key_id="AKIATEST", aws_secret_access_key="test",
                        config=Config(**config) if config else None)


@dataclass
class Fleet:
    """Instances launched the way labkit launches seats, with what the test knows of them."""

    cloud: Sandbox
    login: KeyPair
    login_path: Path
    host_keys: dict[str, KeyPair]
    regions: dict[str, str]
    tmp: Path

    def launch(self, region: str, count: int = 1, **extra: Any) -> list[str]:
        client = ec2(self.cloud, region)
        image = boto3.client("ssm", region_name=region, endpoint_url=self.cloud.endpoint_url,
                             aws_access_key_id="AKIATEST", aws_secret_access_key="test"
                             ).get_parameter(Name=UBUNTU_2404)["Parameter"]["Value"]
        ids = []
        for _ in range(count):
            host_key = new_key()
            reply = client.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                                         InstanceType="t3.medium", KeyName="login",
                                         UserData=user_data(host_key), **extra)
            instance_id = reply["Instances"][0]["InstanceId"]
            self.host_keys[instance_id] = host_key
            self.regions[instance_id] = region
            ids.append(instance_id)
        return ids

    def known_hosts(self, instance_ids: list[str], *, public_only: bool = False,
                    key: KeyPair | None = None) -> Path:
        """A known_hosts file: each machine's key (or ``key``) under its addresses, or
        under its public address alone (what HostKeyAlias looks up)."""
        path = self.tmp / f"known_hosts-{uuid.uuid4().hex[:8]}"
        lines = []
        for instance_id in instance_ids:
            machine = self.cloud.machine(instance_id)
            for address in machine.addresses[:1] if public_only else machine.addresses:
                lines.append(f"{address} {(key or self.host_keys[instance_id]).public_openssh}\n")
        path.write_text("".join(lines))
        return path

    def target(self, instance_id: str, host: str, *, host_key: KeyPair | None = None) -> Target:
        """What labkit builds for a seat on the sandbox: ssh_config = the sandbox's file."""
        return Target(seat="seat1", host=host, username="ubuntu",
                      host_key=(host_key or self.host_keys[instance_id]).public_openssh,
                      key_file=self.login_path, ssh_config=str(self.cloud.ssh_config_path))

    def ssh(self, config: Path | str, destination: str, known: Path, command: str
            ) -> subprocess.CompletedProcess[str]:
        """Real OpenSSH, strict about host keys, never prompting."""
        return subprocess.run(
            ["ssh", "-F", str(config), "-i", str(self.login_path), "-o", "IdentitiesOnly=yes",
             "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", destination, command],
            capture_output=True, text=True, timeout=30, check=False)

    def connect(self, instance_id: str, *, host_key: KeyPair | None = None,
                password: str | None = None) -> paramiko.SSHClient:
        """paramiko with the host key pinned: RejectPolicy, only the expected key known."""
        machine = self.cloud.machine(instance_id)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key = (host_key or self.host_keys[instance_id]).public_blob
        client.get_host_keys().add(machine.address, key.get_name(), key)
        if password is None:
            client.connect(machine.address, 22, username="ubuntu", pkey=self.login.paramiko,
                           look_for_keys=False, allow_agent=False, timeout=10)
        else:
            client.connect(machine.address, 22, username="ubuntu", password=password,
                           look_for_keys=False, allow_agent=False, timeout=10)
        return client

    def run(self, instance_id: str, command: str) -> tuple[int, str]:
        client = self.connect(instance_id)
        try:
            _, stdout, _ = client.exec_command(command, timeout=30)
            out = stdout.read().decode()
            return stdout.channel.recv_exit_status(), out
        finally:
            client.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    # The instructor's real secret is in this process's environment while the sandbox
    # and its machines start: nothing of it may reach them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_MARKER)
        with Sandbox(tmp_path_factory.mktemp("cloud"), regions=REGIONS) as sandbox:
            yield sandbox
    assert "labkit-sandbox-disks" not in Path("/proc/self/mountinfo").read_text()


@pytest.fixture(scope="module")
def fleet(cloud: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    tmp = tmp_path_factory.mktemp("fleet")
    login = new_key()
    login_path = tmp / "login_key"
    login_path.write_text(login.private_openssh)
    login_path.chmod(0o600)
    for region in REGIONS:
        ec2(cloud, region).import_key_pair(KeyName="login", PublicKeyMaterial=login.public_openssh.encode())
    fleet = Fleet(cloud, login, login_path, {}, {}, tmp)
    for region in REGIONS:
        fleet.launch(region, FLEET_SIZE // len(REGIONS))
    cloud.wait_for_ssh(list(fleet.host_keys), timeout=60)
    return fleet


def active_instances(cloud: Sandbox, region: str) -> int:
    """Pending and running instances in the region (all t3.medium in these tests)."""
    pages = ec2(cloud, region).get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    return sum(len(r["Instances"]) for page in pages for r in page["Reservations"])


def first_in(fleet: Fleet, region: str, skip: int = 0) -> str:
    return [i for i, r in fleet.regions.items() if r == region][skip]


def server_end(ssh_connection: str) -> tuple[str, int]:
    """The server address and port of an $SSH_CONNECTION line: the route actually taken."""
    _, _, address, port = ssh_connection.split()
    return address, int(port)


def private_is_its_own(cloud: Sandbox, machine: Machine) -> bool:
    """Whether no other machine has the same private address (two regions' default VPCs
    may hand out the same one; the sandbox gives it to the first machine)."""
    return all(m.private_address != machine.private_address
               for i, m in cloud.machines().items() if i != machine.instance_id)


def config_block(machine: Machine, names: list[str]) -> str:
    return (f"Host {' '.join(names)}\n  HostName 127.0.0.1\n  Port {machine.port}\n"
            f"  HostKeyAlias {machine.address}\n  User ubuntu\n")


def test_every_machine_answers_with_its_pinned_host_key(fleet: Fleet) -> None:
    ids = list(fleet.host_keys)[:FLEET_SIZE]

    def login(instance_id: str) -> str:
        return fleet.run(instance_id, "id -un; hostname")[1]

    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(ids, pool.map(login, ids)))
    for instance_id, answer in answers.items():
        user, hostname = answer.split()
        private = fleet.cloud.machine(instance_id).private_address
        assert (user, hostname) == ("ubuntu", "ip-" + private.replace(".", "-"))

    # The pin is real: another machine's key is refused.
    other = ids[1]
    with pytest.raises(paramiko.BadHostKeyException):
        fleet.connect(ids[0], host_key=fleet.host_keys[other])


def test_ssh_config_maps_every_address_and_id_to_the_machines_port(fleet: Fleet) -> None:
    cloud = fleet.cloud
    machines = [cloud.machine(i) for i in fleet.host_keys]
    ports = [m.port for m in machines]
    assert len(set(ports)) == len(ports) and 22 not in ports
    text = cloud.ssh_config_path.read_text()
    config = paramiko.SSHConfig.from_path(str(cloud.ssh_config_path))
    for machine in machines:
        names = [machine.address, machine.instance_id]
        if private_is_its_own(cloud, machine):
            names.insert(1, machine.private_address)
        assert config_block(machine, names) in text
        for name in names:
            found = config.lookup(name)
            assert (found["hostname"], found["port"], found["hostkeyalias"], found["user"]) == (
                "127.0.0.1", str(machine.port), machine.address, "ubuntu"), name
    # Every private address is mapped exactly once, to a machine that has it.
    for machine in machines:
        found = config.lookup(machine.private_address)
        owners = [m for m in machines if m.port == int(found["port"])]
        assert len(owners) == 1 and owners[0].private_address == machine.private_address


def test_a_shared_private_address_is_mapped_to_the_machine_holding_it(tmp_path: Path) -> None:
    # Two regions' default VPCs may give two machines one private address; only one of
    # them can have it on lo, and the config must send `ssh <it>` to that same machine.
    def machine(instance_id: str, region: str, public: str, port: int) -> Machine:
        return Machine(instance_id=instance_id, region=region, address=public,
                       private_address="172.31.0.5", port=port, pid=1, root=tmp_path,
                       log_path=tmp_path / "log")

    first = machine("i-0aaa", "eu-west-1", "54.214.1.10", 20001)
    second = machine("i-0bbb", "us-east-1", "54.214.1.11", 20002)
    held = {"i-0aaa": ["54.214.1.10"], "i-0bbb": ["54.214.1.11", "172.31.0.5"]}
    path = tmp_path / "ssh_config"
    path.write_text(ssh_config_text([second, first], held, "ubuntu"))
    text = path.read_text()
    assert config_block(first, ["54.214.1.10", "i-0aaa"]) in text
    assert config_block(second, ["54.214.1.11", "172.31.0.5", "i-0bbb"]) in text
    assert "# 172.31.0.5 is another machine's here" in text
    assert text.index("Host 54.214.1.10") < text.index("Host 54.214.1.11")    # by region
    assert paramiko.SSHConfig.from_path(str(path)).lookup("172.31.0.5")["port"] == "20002"


def test_labkit_connects_through_the_sandbox_ssh_config(fleet: Fleet) -> None:
    instance_id = first_in(fleet, REGIONS[0], skip=2)
    machine = fleet.cloud.machine(instance_id)
    conn = open_connection(fleet.target(instance_id, machine.address))
    try:
        assert (conn.host, conn.port) == ("127.0.0.1", machine.port)
        assert conn.client.get_transport().getpeername() == ("127.0.0.1", machine.port)
        out = conn.run("hostname; echo $SSH_CONNECTION", hide=True, in_stream=False).stdout
        hostname, route = out.splitlines()
        assert hostname == "ip-" + machine.private_address.replace(".", "-")
        assert server_end(route) == ("127.0.0.1", machine.port)
    finally:
        conn.close()
    # The pin holds on this route too: another machine's key is refused.
    other = first_in(fleet, REGIONS[0], skip=3)
    with pytest.raises(SshFailure, match="host key mismatch"):
        open_connection(fleet.target(instance_id, machine.address,
                                     host_key=fleet.host_keys[other])).close()


def test_openssh_follows_the_sandbox_ssh_config_with_host_key_alias(fleet: Fleet) -> None:
    cloud = fleet.cloud
    instance_id = first_in(fleet, REGIONS[1], skip=2)
    machine = cloud.machine(instance_id)
    known = fleet.known_hosts([instance_id], public_only=True)     # the key under 54.x only
    names = [machine.address, instance_id]
    if private_is_its_own(cloud, machine):
        names.append(machine.private_address)
    for name in names:
        result = fleet.ssh(cloud.ssh_config_path, f"ubuntu@{name}", known,
                           "hostname; echo $SSH_CONNECTION")
        assert result.returncode == 0, (name, result.stderr)
        hostname, route = result.stdout.splitlines()
        assert hostname == "ip-" + machine.private_address.replace(".", "-")
        assert server_end(route) == ("127.0.0.1", machine.port), name
    # A key the pin does not know is refused on this route as well.
    wrong = fleet.known_hosts([instance_id], public_only=True, key=new_key())
    refused = fleet.ssh(cloud.ssh_config_path, f"ubuntu@{machine.address}", wrong, "true")
    assert refused.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_openssh_reaches_a_seat_through_a_labkit_style_config(fleet: Fleet) -> None:
    instance_id = first_in(fleet, REGIONS[1])
    machine = fleet.cloud.machine(instance_id)
    known = fleet.known_hosts([instance_id], public_only=True)
    # The shape of labkit's per-seat file (labkit.outputs.ssh_config_text). `Host 54...`
    # in the Included sandbox file does not match `seat1`, so this goes to port 22 of
    # the address, on lo.
    wrapper = fleet.tmp / "seat_config"
    wrapper.write_text(
        f"Host seat1\n  HostName {machine.address}\n  HostKeyAlias {machine.address}\n"
        f"  User ubuntu\n  IdentityFile {fleet.login_path}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n\n"
        f"Include {fleet.cloud.ssh_config_path}\n")
    seat = fleet.ssh(wrapper, "seat1", known, "hostname; echo $SSH_CONNECTION")
    assert seat.returncode == 0, seat.stderr
    hostname, route = seat.stdout.splitlines()
    assert hostname == "ip-" + machine.private_address.replace(".", "-")
    assert server_end(route) == (machine.address, 22)

    # paramiko reads the same file (it ignores Include, and needs nothing from it).
    found = paramiko.SSHConfig.from_path(str(wrapper)).lookup("seat1")
    assert (found["hostname"], int(found.get("port", 22))) == (machine.address, 22)
    client = paramiko.SSHClient()
    client.load_host_keys(str(known))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(found["hostname"], int(found.get("port", 22)), username=found["user"],
                   key_filename=found["identityfile"][0], look_for_keys=False, allow_agent=False,
                   timeout=10)
    client.close()

    # With no config at all, both addresses answer on port 22, as on EC2; a key the pin
    # does not know is refused.
    both = fleet.known_hosts([instance_id])
    for address in machine.addresses:
        if address == machine.private_address and not private_is_its_own(fleet.cloud, machine):
            continue
        direct = fleet.ssh("/dev/null", f"ubuntu@{address}", both, "echo $SSH_CONNECTION")
        assert direct.returncode == 0, direct.stderr
        assert server_end(direct.stdout.strip()) == (address, 22)
    stranger = fleet.known_hosts([instance_id], key=new_key())
    refused = fleet.ssh("/dev/null", f"ubuntu@{machine.address}", stranger, "true")
    assert refused.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_a_sudo_change_stays_on_its_own_machine(fleet: Fleet) -> None:
    here, there = first_in(fleet, REGIONS[0]), first_in(fleet, REGIONS[0], skip=1)
    name = f"labkit-marker-{uuid.uuid4().hex[:8]}"
    status, _ = fleet.run(here, f"sudo touch /etc/{name} && echo x | sudo tee /root/{name} >/dev/null")
    assert status == 0
    assert (fleet.cloud.machine(here).root / "etc" / name).exists()

    status, out = fleet.run(there, f"test -e /etc/{name} && echo etc; sudo test -e /root/{name} && echo root; echo checked")
    assert (status, out) == (0, "checked\n")
    assert not (fleet.cloud.machine(there).root / "etc" / name).exists()
    assert not Path("/etc", name).exists() and not Path("/root", name).exists()


def test_machines_see_none_of_the_instructors_secrets_or_files(cloud: Sandbox, fleet: Fleet) -> None:
    instance_id = first_in(fleet, REGIONS[1], skip=1)
    # What a student sees: their session's environment, every process's environment...
    status, env = fleet.run(instance_id, "env; sudo cat /proc/[0-9]*/environ | tr '\\0' '\\n'")
    assert status == 0 and "USER=ubuntu" in env and "PATH=" in env
    assert SECRET_MARKER not in env and "AWS_" not in env
    # ...every file root can read where an instructor's things live on a host...
    status, found = fleet.run(instance_id, (
        f"sudo grep -rlsF {SECRET_MARKER} /etc /root /home /tmp /var/tmp /run /work /opt /srv /mnt"
        " /usr/local; echo status=$?"))
    assert found.splitlines()[-1] == "status=1"        # grep: searched, nothing found
    # ...and those directories themselves: the host's are hidden, the machine's are empty.
    status, listing = fleet.run(instance_id, "sudo ls -A /root /work /opt /srv /mnt; ls -d ~/.aws 2>&1")
    assert listing.split() == ["/mnt:", "/opt:", "/root:", "/srv:", "/work:", "ls:", "cannot",
                               "access", "'/home/ubuntu/.aws':", "No", "such", "file", "or",
                               "directory"]
    for hidden in (Path(__file__).resolve().parent, cloud.workdir, Path.home()):
        assert hidden.exists() and any(hidden.iterdir())
        inside = cloud.run_in(instance_id, ["ls", "-A", str(hidden)])
        # Either there and empty, or not there at all (/tmp is the machine's own).
        assert inside.stdout == "" and (inside.returncode == 0 or "No such file" in inside.stderr)


def test_capacity_and_quota_refuse_launches_as_ec2_does(fleet: Fleet) -> None:
    cloud = fleet.cloud
    region = REGIONS[0]
    client = ec2(cloud, region, retries={"max_attempts": 1})
    running = active_instances(cloud, region)
    image = cloud.images()[region]
    cloud.capacity[region] = running
    try:
        with pytest.raises(ClientError) as refused:
            client.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.medium")
        assert refused.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        del cloud.capacity[region]

    other = REGIONS[1]
    quotas = boto3.client("service-quotas", region_name=other, endpoint_url=cloud.endpoint_url,
                          aws_access_key_id="AKIATEST", aws_secret_access_key="test")
    cloud.vcpu_quota[other] = 2 * active_instances(cloud, other) + 2    # room for one t3.medium
    try:
        quota = quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-1216C47A")["Quota"]
        assert quota["Value"] == cloud.vcpu_quota[other]
        with pytest.raises(ClientError) as refused:
            ec2(cloud, other).run_instances(ImageId=cloud.images()[other], MinCount=2, MaxCount=2,
                                            InstanceType="t3.medium")
        assert refused.value.response["Error"]["Code"] == "VcpuLimitExceeded"
        # As on EC2, MinCount that fits launches as many as fit, not MaxCount.
        partial = ec2(cloud, other).run_instances(ImageId=cloud.images()[other], MinCount=1,
                                                  MaxCount=3, InstanceType="t3.medium")
        extra = [i["InstanceId"] for i in partial["Instances"]]
        assert len(extra) == 1
        ec2(cloud, other).terminate_instances(InstanceIds=extra)
    finally:
        del cloud.vcpu_quota[other]


def test_terminate_takes_the_machine_away(fleet: Fleet) -> None:
    region = REGIONS[1]
    path = fleet.cloud.ssh_config_path
    # Someone reading the file the whole time (labkit does, per attempt) only ever sees
    # whole files: every Host block complete.
    reads: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            reads.append(path.read_text())

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        [instance_id] = fleet.launch(region)
        fleet.cloud.wait_for_ssh([instance_id])
        machine = fleet.cloud.machine(instance_id)
        text = path.read_text()
        assert config_block(machine, [machine.address, *(
            [machine.private_address] if private_is_its_own(fleet.cloud, machine) else []),
            instance_id]) in text

        ec2(fleet.cloud, region).terminate_instances(InstanceIds=[instance_id])
        fleet.cloud.wait_until_gone(instance_id)
    finally:
        done.set()
        watcher.join()
    assert not ssh_answers(machine.address, 22)
    assert not ssh_answers("127.0.0.1", machine.port)
    text = path.read_text()
    assert instance_id not in text and f"{machine.address} " not in text
    assert f"Port {machine.port}\n" not in text
    assert paramiko.SSHConfig.from_path(str(path)).lookup(machine.address)["hostname"] == machine.address
    assert not Path(f"/proc/{machine.pid}").exists()
    assert any(instance_id in r for r in reads)
    for text in reads:
        assert text.startswith("# labkit sandbox") and text.endswith("\n")
        blocks = text.split("\nHost ")[1:]
        assert blocks and all(b.count("\n  ") == 4 for b in blocks)


def test_stop_then_start_keeps_files_password_and_host_key(fleet: Fleet) -> None:
    region = REGIONS[0]
    [instance_id] = fleet.launch(region)
    fleet.cloud.wait_for_ssh([instance_id])
    # What labkit's bootstrap does: a password, password logins on, sshd reloaded.
    status, _ = fleet.run(instance_id, (
        "echo kept > ~/notes.txt && echo 'ubuntu:Correct-Horse-7' | sudo chpasswd && "
        "echo 'PasswordAuthentication yes' | sudo tee /etc/ssh/sshd_config.d/50-labkit.conf >/dev/null"))
    assert status == 0
    with pytest.raises(paramiko.AuthenticationException):
        fleet.connect(instance_id, password="Correct-Horse-7")
    status, out = fleet.run(instance_id, "systemctl reload ssh; echo $?; sudo systemctl reload ssh")
    assert status == 0 and out.split()[0] == "1"      # without sudo, refused as by systemd
    deadline = time.monotonic() + 10
    while True:
        try:
            fleet.connect(instance_id, password="Correct-Horse-7").close()
            break
        except (paramiko.AuthenticationException, paramiko.SSHException, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

    client = ec2(fleet.cloud, region)
    before = fleet.cloud.machine(instance_id)
    client.stop_instances(InstanceIds=[instance_id])
    fleet.cloud.wait_until_gone(instance_id)
    assert not ssh_answers(before.address, 22)
    assert not ssh_answers("127.0.0.1", before.port)
    assert instance_id not in fleet.cloud.ssh_config_path.read_text()    # stopped: unmapped
    client.start_instances(InstanceIds=[instance_id])
    fleet.cloud.wait_for_ssh([instance_id])
    after = fleet.cloud.machine(instance_id)
    assert after.address != before.address            # a new public address, as on EC2
    assert fleet.run(instance_id, "cat ~/notes.txt") == (0, "kept\n")
    fleet.connect(instance_id, password="Correct-Horse-7").close()
    # The config now maps the new address (and not the old one) to the new port, and
    # labkit, reading it afresh, gets there with the same pinned key.
    text = fleet.cloud.ssh_config_path.read_text()
    assert f"Host {after.address} " in text and f"{before.address} " not in text
    conn = open_connection(fleet.target(instance_id, after.address))
    try:
        assert conn.client.get_transport().getpeername() == ("127.0.0.1", after.port)
    finally:
        conn.close()


def test_ssh_delay_and_dead_ssh(tmp_path: Path) -> None:
    login = new_key()
    with Sandbox(tmp_path / "slow", regions=["sa-east-1"], ssh_delay=2.0,
                 dead_ssh={"seat-dead"}) as cloud:
        client = ec2(cloud, "sa-east-1")
        client.import_key_pair(KeyName="login", PublicKeyMaterial=login.public_openssh.encode())
        ids = {}
        for seat in ("seat-ok", "seat-dead"):
            reply = client.run_instances(
                ImageId=cloud.images()["sa-east-1"], MinCount=1, MaxCount=1, KeyName="login",
                UserData=user_data(new_key()),
                TagSpecifications=[{"ResourceType": "instance",
                                    "Tags": [{"Key": "labkit:seat", "Value": seat}]}])
            ids[seat] = reply["Instances"][0]["InstanceId"]
        ok, dead = cloud.machine(ids["seat-ok"]), cloud.machine(ids["seat-dead"])
        booted = time.monotonic()
        assert not ssh_answers(ok.address, 22)        # still "booting"
        assert not ssh_answers("127.0.0.1", ok.port)
        # Mapped from boot, as an instance has its address before SSH answers.
        assert f"Host {ok.address} " in cloud.ssh_config_path.read_text()
        cloud.wait_for_ssh([ids["seat-ok"]], timeout=20)
        assert time.monotonic() - booted > 1.0
        assert ssh_answers(ok.address, 22) and ssh_answers("127.0.0.1", ok.port)
        assert dead.dead_ssh and not ok.dead_ssh
        assert not ssh_answers(dead.address, 22)
        assert not ssh_answers("127.0.0.1", dead.port)
        assert cloud.run_in(ids["seat-dead"], ["true"]).returncode == 0   # the machine itself is up
