"""The sandbox cloud behaves like the EC2 seats labkit provisions.

These tests drive the emulator itself (labkit.sandbox), so boto3 here is the "AWS
client" and the assertions are about what a student or labkit would notice on a
machine: it answers SSH at its address with the host key from its user-data, sudo
works and stays on that machine, a stopped machine keeps its files, a terminated one
is gone, and the instructor's secrets never show inside.
"""

from __future__ import annotations

import base64
import io
import subprocess
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

from labkit.sandbox import Sandbox, ssh_answers

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

    def known_hosts(self, instance_ids: list[str]) -> Path:
        path = self.tmp / f"known_hosts-{uuid.uuid4().hex[:8]}"
        lines = []
        for instance_id in instance_ids:
            machine = self.cloud.machine(instance_id)
            for address in machine.addresses:
                lines.append(f"{address} {self.host_keys[instance_id].public_openssh}\n")
        path.write_text("".join(lines))
        return path

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


def test_openssh_reaches_a_seat_through_a_labkit_style_config(fleet: Fleet) -> None:
    instance_id = first_in(fleet, REGIONS[1])
    machine = fleet.cloud.machine(instance_id)
    known = fleet.known_hosts([instance_id])
    wrapper = fleet.tmp / "seat_config"
    wrapper.write_text(
        f"Host seat1\n  HostName {machine.address}\n  User ubuntu\n"
        f"  IdentityFile {fleet.login_path}\n  UserKnownHostsFile {known}\n"
        f"  StrictHostKeyChecking yes\n  BatchMode yes\nInclude {fleet.cloud.ssh_config_path}\n")
    seat = subprocess.run(["ssh", "-F", str(wrapper), "seat1", "hostname"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert seat.returncode == 0, seat.stderr
    assert seat.stdout.strip() == "ip-" + machine.private_address.replace(".", "-")

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

    # Both addresses answer to a plain `ssh -F <sandbox config>`; a key the pin does not
    # know is refused.
    for address in machine.addresses:
        direct = subprocess.run(
            ["ssh", "-F", str(fleet.cloud.ssh_config_path), "-i", str(fleet.login_path),
             "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", f"ubuntu@{address}", "true"],
            capture_output=True, text=True, timeout=30, check=False)
        assert direct.returncode == 0, direct.stderr
    stranger = fleet.tmp / "known_hosts_wrong"
    stranger.write_text(f"{machine.address} {new_key().public_openssh}\n")
    refused = subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(fleet.login_path),
         "-o", f"UserKnownHostsFile={stranger}", "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", f"ubuntu@{machine.address}", "true"],
        capture_output=True, text=True, timeout=30, check=False)
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
    [instance_id] = fleet.launch(region)
    fleet.cloud.wait_for_ssh([instance_id])
    machine = fleet.cloud.machine(instance_id)
    assert instance_id in fleet.cloud.ssh_config_path.read_text()

    ec2(fleet.cloud, region).terminate_instances(InstanceIds=[instance_id])
    fleet.cloud.wait_until_gone(instance_id)
    assert not ssh_answers(machine.address, 22)
    assert not ssh_answers("127.0.0.1", machine.port)
    assert instance_id not in fleet.cloud.ssh_config_path.read_text()
    assert not Path(f"/proc/{machine.pid}").exists()


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
    client.start_instances(InstanceIds=[instance_id])
    fleet.cloud.wait_for_ssh([instance_id])
    after = fleet.cloud.machine(instance_id)
    assert after.address != before.address            # a new public address, as on EC2
    assert fleet.run(instance_id, "cat ~/notes.txt") == (0, "kept\n")
    fleet.connect(instance_id, password="Correct-Horse-7").close()


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
        cloud.wait_for_ssh([ids["seat-ok"]], timeout=20)
        assert time.monotonic() - booted > 1.0
        assert dead.dead_ssh and not ok.dead_ssh
        assert not ssh_answers(dead.address, 22)
        assert cloud.run_in(ids["seat-dead"], ["true"]).returncode == 0   # the machine itself is up
