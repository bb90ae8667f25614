"""Teardown against a moto server: everything of the session goes, nothing else does.

The cloud is seeded with boto3 the way labkit's provision creates things (tags in the
create call), for session ``alpha``, for session ``alpha-late`` (whose names start like
alpha's: ``labkit-alpha-late-...``), and without any tag but with alpha's names. labkit
is pointed at the server only through the standard environment (``AWS_ENDPOINT_URL``);
boto3 is used here only to seed and to look at what teardown left.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from rich.console import Console

from labkit import teardown as td
from labkit.errors import AwsError

A, B = "alpha", "alpha-late"
ACCOUNT = "123456789012"  # moto's default account
REGIONS = ["us-east-1", "eu-west-1", "sa-east-1"]
FOREIGN_REGION = "us-west-2"  # only untagged look-alikes live here
TAG = "labkit:session"


def _tags(session: str, seat: str | None = None) -> list[dict[str, str]]:
    tags = [{"Key": TAG, "Value": session}]
    if seat:
        tags.append({"Key": "labkit:seat", "Value": seat})
    return tags


def _spec(kind: str, session: str, seat: str | None = None) -> dict[str, Any]:
    return {"ResourceType": kind, "Tags": _tags(session, seat)}


# -- the moto server -------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # werkzeug may still be finishing a request
        proc.kill()
        proc.wait(timeout=10)


def _aws_env(url: str, home: Path) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials")}


@pytest.fixture
def cloud(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A clean moto account, reached through the standard environment only."""
    req = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    for key, value in _aws_env(moto_url, tmp_path).items():
        monkeypatch.setenv(key, value)
    return moto_url


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, highlight=False), buf


# -- seeding, as provision would create things ---------------------------------------------

@dataclass
class Seeded:
    """What was created: kind -> {(region, id)}; IAM's region is "global"."""

    ids: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def add(self, kind: str, ident: str, region: str = "global") -> None:
        self.ids.setdefault(kind, set()).add((region, ident))

    def flat(self) -> set[tuple[str, str]]:
        return {pair for pairs in self.ids.values() for pair in pairs}


def _ec2(region: str) -> Any:
    return boto3.client("ec2", region_name=region)


def _image(region: str) -> str:
    return str(_ec2(region).describe_images(Owners=["amazon"])["Images"][0]["ImageId"])


def _default_subnet(region: str) -> str:
    subnets = _ec2(region).describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return str(min(subnets, key=lambda s: s["AvailabilityZone"])["SubnetId"])


def _default_vpc(region: str) -> str:
    return str(_ec2(region).describe_vpcs(
        Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"])


def seed_region(out: Seeded, session: str, region: str, *, seats: list[str],
                key_and_group_only: bool = False) -> None:
    ec2 = _ec2(region)
    name = f"labkit-{session}"
    ec2.create_key_pair(KeyName=name, TagSpecifications=[_spec("key-pair", session)])
    out.add("key-pair", name, region)
    group = ec2.create_security_group(
        GroupName=name, Description=f"labkit session {session}", VpcId=_default_vpc(region),
        TagSpecifications=[{"ResourceType": "security-group",
                            "Tags": _tags(session) + [{"Key": "Name", "Value": name}]}]
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                       "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    out.add("security-group", group, region)
    if key_and_group_only:
        return
    image, subnet = _image(region), _default_subnet(region)
    for seat in seats:
        inst = ec2.run_instances(
            ImageId=image, InstanceType="t3.medium", MinCount=1, MaxCount=1, KeyName=name,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet, "Groups": [group],
                                "AssociatePublicIpAddress": True}],
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                                  "Ebs": {"VolumeSize": 16, "VolumeType": "gp3",
                                          "DeleteOnTermination": True}}],
            TagSpecifications=[_spec("instance", session, seat),
                               _spec("volume", session, seat),
                               _spec("network-interface", session, seat)],
        )["Instances"][0]
        out.add("instance", inst["InstanceId"], region)


def seed_session(session: str, regions: list[str], seats_per_region: int) -> Seeded:
    """A whole class: machines in every region (one stopped), a detached disk, an
    Elastic IP on a machine, a spare network interface, an EMR cluster, IAM roles and
    users, the versioned bucket, a billing alarm and its topic."""
    out = Seeded()
    for r, region in enumerate(regions):
        seed_region(out, session, region,
                    seats=[f"s{r}{i:02d}" for i in range(seats_per_region)])
    first, second, last = regions[0], regions[1 % len(regions)], regions[-1]
    some = sorted(i for r, i in out.ids["instance"] if r == first)
    _ec2(first).stop_instances(InstanceIds=[some[0]])
    vol = _ec2(second).create_volume(Size=8, AvailabilityZone=f"{second}a", VolumeType="gp3",
                                     TagSpecifications=[_spec("volume", session, "s100")])
    out.add("volume", vol["VolumeId"], second)
    eip = _ec2(first).allocate_address(Domain="vpc",
                                       TagSpecifications=[_spec("elastic-ip", session)])
    _ec2(first).associate_address(AllocationId=eip["AllocationId"], InstanceId=some[-1])
    out.add("elastic-ip", eip["AllocationId"], first)
    eni = _ec2(last).create_network_interface(
        SubnetId=_default_subnet(last), TagSpecifications=[_spec("network-interface", session)])
    out.add("network-interface", eni["NetworkInterface"]["NetworkInterfaceId"], last)

    emr = boto3.client("emr", region_name=first)
    cluster = emr.run_job_flow(
        Name=f"labkit {session}/s000", ReleaseLabel="emr-7.5.0",
        Instances={"InstanceGroups": [
            {"Name": "primary", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge",
             "InstanceCount": 1, "Market": "ON_DEMAND"},
            {"Name": "core", "InstanceRole": "CORE", "InstanceType": "m5.xlarge",
             "InstanceCount": 2, "Market": "ON_DEMAND"}],
            "KeepJobFlowAliveWhenNoSteps": True, "Ec2SubnetId": _default_subnet(first)},
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole",
        VisibleToAllUsers=True, Tags=_tags(session, "s000"))
    out.add("emr-cluster", cluster["JobFlowId"], first)

    iam = boto3.client("iam", region_name="us-east-1")
    role = f"labkit-{session}-s000"
    iam.create_role(RoleName=role, Path="/labkit/", Tags=_tags(session, "s000"),
                    AssumeRolePolicyDocument=json.dumps({
                        "Version": "2012-10-17", "Statement": [{
                            "Effect": "Allow", "Action": "sts:AssumeRole",
                            "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    iam.put_role_policy(RoleName=role, PolicyName="labkit", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                "Resource": "*"}]}))
    iam.create_instance_profile(InstanceProfileName=role, Path="/labkit/",
                                Tags=_tags(session, "s000"))
    iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    out.add("iam-role", role)
    out.add("iam-instance-profile", role)
    user = f"labkit-{session}-s001"
    iam.create_user(UserName=user, Path="/labkit/", Tags=_tags(session, "s001"))
    policy = iam.create_policy(
        PolicyName=user, Path="/labkit/", Tags=_tags(session, "s001"),
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))["Policy"]["Arn"]
    iam.attach_user_policy(UserName=user, PolicyArn=policy)
    iam.create_access_key(UserName=user)
    out.add("iam-user", user)
    out.add("iam-policy", policy)

    bucket = f"labkit-{session}-{ACCOUNT}"
    s3 = boto3.client("s3", region_name=second)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": second})
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": _tags(session)})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        s3.put_object(Bucket=bucket, Key="materials/notes.txt", Body=f"v{i}".encode())
        s3.put_object(Bucket=bucket, Key=f"logs/j-{i}/stdout", Body=b"log")
    s3.delete_object(Bucket=bucket, Key="logs/j-0/stdout")  # leaves a delete marker
    out.add("s3-bucket", bucket, second)

    alarm = f"labkit-{session}-billing-10usd"
    topic = boto3.client("sns", region_name="us-east-1").create_topic(
        Name=f"labkit-{session}-alerts", Tags=_tags(session))["TopicArn"]
    boto3.client("cloudwatch", region_name="us-east-1").put_metric_alarm(
        AlarmName=alarm, Namespace="AWS/Billing", MetricName="EstimatedCharges",
        Dimensions=[{"Name": "Currency", "Value": "USD"}], Statistic="Maximum",
        Period=21600, EvaluationPeriods=1, Threshold=10.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[topic],
        Tags=_tags(session))
    out.add("alarm", alarm, "us-east-1")
    out.add("sns-topic", topic, "us-east-1")
    return out


def seed_untagged() -> Seeded:
    """Look-alikes with alpha's names and no tag at all: teardown must leave every one."""
    out = Seeded()
    for region in (REGIONS[0], FOREIGN_REGION):
        ec2 = _ec2(region)
        inst = ec2.run_instances(ImageId=_image(region), InstanceType="t3.micro",
                                 MinCount=1, MaxCount=1)["Instances"][0]
        out.add("instance", inst["InstanceId"], region)
    # alpha's own group name, in a region where alpha has no group of its own
    ec2 = _ec2(FOREIGN_REGION)
    group = ec2.create_security_group(GroupName=f"labkit-{A}", Description="not labkit's",
                                      VpcId=_default_vpc(FOREIGN_REGION))["GroupId"]
    out.add("security-group", group, FOREIGN_REGION)
    ec2.create_key_pair(KeyName=f"labkit-{A}")
    out.add("key-pair", f"labkit-{A}", FOREIGN_REGION)
    vol = ec2.create_volume(Size=1, AvailabilityZone=f"{FOREIGN_REGION}a")
    out.add("volume", vol["VolumeId"], FOREIGN_REGION)
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = f"labkit-{A}-000000000000"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="keep.txt", Body=b"mine")
    out.add("s3-bucket", bucket, "us-east-1")
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_role(RoleName=f"labkit-{A}-by-hand", AssumeRolePolicyDocument="{}")
    out.add("iam-role", f"labkit-{A}-by-hand")
    iam.create_user(UserName=f"labkit-{A}-by-hand")
    out.add("iam-user", f"labkit-{A}-by-hand")
    boto3.client("cloudwatch", region_name="us-east-1").put_metric_alarm(
        AlarmName=f"labkit-{A}-by-hand", Namespace="AWS/EC2", MetricName="CPUUtilization",
        Statistic="Average", Period=300, EvaluationPeriods=1, Threshold=90.0,
        ComparisonOperator="GreaterThanThreshold")
    out.add("alarm", f"labkit-{A}-by-hand", "us-east-1")
    topic = boto3.client("sns", region_name="us-east-1").create_topic(
        Name=f"labkit-{A}-by-hand")["TopicArn"]
    out.add("sns-topic", topic, "us-east-1")
    return out


# -- looking at what is there, with boto3 directly ------------------------------------------

LIVE = ["pending", "running", "stopping", "stopped", "shutting-down"]


def present(seeded: Seeded) -> dict[str, set[tuple[str, str]]]:
    """Which of the seeded resources still exist (instances: not terminated)."""
    return {kind: {(r, i) for r, i in pairs if _exists(kind, i, r)}
            for kind, pairs in seeded.ids.items()}


def _exists(kind: str, ident: str, region: str) -> bool:
    try:
        if kind == "instance":
            res = _ec2(region).describe_instances(InstanceIds=[ident])["Reservations"]
            return any(i["State"]["Name"] in LIVE for r in res for i in r["Instances"])
        if kind == "volume":
            return bool(_ec2(region).describe_volumes(VolumeIds=[ident])["Volumes"])
        if kind == "elastic-ip":
            return bool(_ec2(region).describe_addresses(AllocationIds=[ident])["Addresses"])
        if kind == "network-interface":
            return bool(_ec2(region).describe_network_interfaces(
                NetworkInterfaceIds=[ident])["NetworkInterfaces"])
        if kind == "security-group":
            return bool(_ec2(region).describe_security_groups(
                GroupIds=[ident])["SecurityGroups"])
        if kind == "key-pair":
            return bool(_ec2(region).describe_key_pairs(KeyNames=[ident])["KeyPairs"])
        if kind == "emr-cluster":
            state = boto3.client("emr", region_name=region).describe_cluster(
                ClusterId=ident)["Cluster"]["Status"]["State"]
            return not str(state).startswith("TERMINATED")
        iam = boto3.client("iam", region_name="us-east-1")
        if kind == "iam-role":
            iam.get_role(RoleName=ident)
            return True
        if kind == "iam-instance-profile":
            iam.get_instance_profile(InstanceProfileName=ident)
            return True
        if kind == "iam-user":
            iam.get_user(UserName=ident)
            return True
        if kind == "iam-policy":
            iam.get_policy(PolicyArn=ident)
            return True
        if kind == "s3-bucket":
            boto3.client("s3", region_name=region).head_bucket(Bucket=ident)
            return True
        if kind == "alarm":
            return bool(boto3.client("cloudwatch", region_name=region).describe_alarms(
                AlarmNames=[ident])["MetricAlarms"])
        if kind == "sns-topic":
            boto3.client("sns", region_name=region).get_topic_attributes(TopicArn=ident)
            return True
    except Exception as e:
        text = str(e)
        if any(w in text for w in ("NotFound", "NoSuch", "404", "does not exist",
                                   "not found", "Not Found", "InvalidKeyPair")):
            return False
        raise
    raise AssertionError(f"unknown kind {kind}")


def session_tagged_anywhere(session: str) -> list[str]:
    """Everything still tagged with the session, by direct describe calls in every region
    seeded, IAM, S3, CloudWatch and SNS: independent of labkit's inventory."""
    left: list[str] = []
    flt = [{"Name": f"tag:{TAG}", "Values": [session]}]
    for region in REGIONS + [FOREIGN_REGION]:
        ec2 = _ec2(region)
        left += [f"{region} {i['InstanceId']}" for r in ec2.describe_instances(
            Filters=flt + [{"Name": "instance-state-name", "Values": LIVE}])["Reservations"]
            for i in r["Instances"]]
        left += [f"{region} {v['VolumeId']}" for v in ec2.describe_volumes(
            Filters=flt)["Volumes"]]
        left += [f"{region} {a['AllocationId']}" for a in ec2.describe_addresses(
            Filters=flt)["Addresses"]]
        left += [f"{region} {n['NetworkInterfaceId']}" for n in
                 ec2.describe_network_interfaces(Filters=flt)["NetworkInterfaces"]]
        left += [f"{region} {g['GroupId']}" for g in ec2.describe_security_groups(
            Filters=flt)["SecurityGroups"]]
        left += [f"{region} {k['KeyName']}" for k in ec2.describe_key_pairs(
            Filters=flt)["KeyPairs"]]
        emr = boto3.client("emr", region_name=region)
        for c in emr.list_clusters(ClusterStates=["STARTING", "BOOTSTRAPPING", "RUNNING",
                                                  "WAITING", "TERMINATING"])["Clusters"]:
            tags = emr.describe_cluster(ClusterId=c["Id"])["Cluster"].get("Tags", [])
            if {"Key": TAG, "Value": session} in tags:
                left.append(f"{region} {c['Id']}")
        cw = boto3.client("cloudwatch", region_name=region)
        for a in cw.describe_alarms()["MetricAlarms"]:
            if {"Key": TAG, "Value": session} in cw.list_tags_for_resource(
                    ResourceARN=a["AlarmArn"])["Tags"]:
                left.append(f"{region} {a['AlarmName']}")
        sns = boto3.client("sns", region_name=region)
        for t in sns.list_topics()["Topics"]:
            if {"Key": TAG, "Value": session} in sns.list_tags_for_resource(
                    ResourceArn=t["TopicArn"])["Tags"]:
                left.append(f"{region} {t['TopicArn']}")
    iam = boto3.client("iam", region_name="us-east-1")
    for role in iam.list_roles()["Roles"]:
        if {"Key": TAG, "Value": session} in iam.get_role(
                RoleName=role["RoleName"])["Role"].get("Tags", []):
            left.append(role["RoleName"])
    for user in iam.list_users()["Users"]:
        if {"Key": TAG, "Value": session} in iam.get_user(
                UserName=user["UserName"])["User"].get("Tags", []):
            left.append(user["UserName"])
    for prof in iam.list_instance_profiles()["InstanceProfiles"]:
        if {"Key": TAG, "Value": session} in iam.get_instance_profile(
                InstanceProfileName=prof["InstanceProfileName"])["InstanceProfile"].get(
                    "Tags", []):
            left.append(prof["InstanceProfileName"])
    for pol in iam.list_policies(Scope="Local")["Policies"]:
        if {"Key": TAG, "Value": session} in iam.get_policy(
                PolicyArn=pol["Arn"])["Policy"].get("Tags", []):
            left.append(pol["Arn"])
    s3 = boto3.client("s3", region_name="us-east-1")
    for b in s3.list_buckets()["Buckets"]:
        try:
            tags = s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"]
        except botocore.exceptions.ClientError as e:
            assert "NoSuchTagSet" in str(e), e
            tags = []
        if {"Key": TAG, "Value": session} in tags:
            left.append(b["Name"])
    return sorted(left)


@pytest.fixture
def world(cloud: str) -> dict[str, Seeded]:
    return {A: seed_session(A, REGIONS, 2), B: seed_session(B, REGIONS[1:], 1),
            "untagged": seed_untagged()}


def _all_present(seeded: Seeded) -> bool:
    return present(seeded) == seeded.ids


# -- the tests -----------------------------------------------------------------------------

def test_list_only_finds_the_session_and_deletes_nothing(world: dict[str, Seeded]) -> None:
    console, buf = _console()
    found = td.teardown(A, profile=None, console=console, delete=False)

    by_kind: dict[str, set[tuple[str, str]]] = {}
    for f in found:
        by_kind.setdefault(f.kind, set()).add((f.region, f.id))
        assert f.session == A
    assert by_kind == world[A].ids
    assert {f.region for f in found if f.kind == "instance"} == set(REGIONS)
    for seeded in world.values():
        assert _all_present(seeded), present(seeded)
    text = buf.getvalue()
    assert "nothing deleted" in text and "6 machines" in text
    assert f"labkit-{A}-{ACCOUNT}" in text

    found = td.inventory(A, profile=None)
    ids = {(f.region, f.id) for f in found}
    assert ids == world[A].flat()
    assert not ids & world[B].flat()
    assert not ids & world["untagged"].flat()
    running = [f for f in found if f.kind == "instance" and "running" in f.detail]
    stopped = [f for f in found if f.kind == "instance" and "stopped" in f.detail]
    assert len(running) == 5 and len(stopped) == 1
    assert all(f.age_hours is not None and f.age_hours < 1 for f in running)


def test_delete_removes_the_session_and_nothing_else_and_can_run_again(world: dict[str, Seeded]) -> None:
    console, buf = _console()
    left = td.teardown(A, profile=None, console=console, delete=True)

    assert left == []
    assert td.inventory(A, profile=None) == []
    assert session_tagged_anywhere(A) == []
    assert present(world[A]) == {kind: set() for kind in world[A].ids}
    assert _all_present(world[B]), present(world[B])
    assert _all_present(world["untagged"]), present(world["untagged"])
    bucket = f"labkit-{B}-{ACCOUNT}"
    versions = boto3.client("s3", region_name=REGIONS[1]).list_object_versions(Bucket=bucket)
    assert len(versions.get("Versions", [])) == 6  # the other session's data is intact
    text = buf.getvalue()
    assert "terminated 6 machines in 3 regions" in text
    assert "deleted 3 security groups in 3 regions" in text
    assert "terminated 1 EMR cluster in 1 region" in text
    assert "nothing tagged is left" in text

    console, buf = _console()  # again: nothing to do, and no error for it
    assert td.teardown(A, profile=None, console=console, delete=True) == []
    assert f"nothing tagged labkit:session={A}" in buf.getvalue()
    assert _all_present(world[B])


def test_keep_data_keeps_the_bucket_and_its_objects(world: dict[str, Seeded]) -> None:
    console, buf = _console()
    left = td.teardown(A, profile=None, console=console, delete=True, keep_data=True)

    assert left == []
    bucket = f"labkit-{A}-{ACCOUNT}"
    assert present(world[A])["s3-bucket"] == {(REGIONS[1], bucket)}
    assert present(world[A])["instance"] == set()
    objects = boto3.client("s3", region_name=REGIONS[1]).list_object_versions(Bucket=bucket)
    assert len(objects.get("Versions", [])) == 6
    assert f"bucket {bucket} in {REGIONS[1]} is kept" in buf.getvalue()


def test_half_provisioned_session_is_cleaned(cloud: str) -> None:
    """A provision that stopped after the key pair and group of its first region."""
    half = Seeded()
    seed_region(half, A, "eu-west-1", seats=[], key_and_group_only=True)
    other = seed_session(B, ["eu-west-1"], 1)
    console, buf = _console()

    assert {f.kind for f in td.inventory(A, profile=None)} == {"key-pair", "security-group"}
    assert td.teardown(A, profile=None, console=console, delete=True) == []
    assert present(half) == {"key-pair": set(), "security-group": set()}
    assert _all_present(other)
    assert "deleted 1 key pair in 1 region" in buf.getvalue()


def test_a_tagged_disk_on_someone_elses_machine_is_left_and_reported(cloud: str) -> None:
    region = "eu-west-1"
    ec2 = _ec2(region)
    theirs = ec2.run_instances(ImageId=_image(region), InstanceType="t3.micro", MinCount=1,
                               MaxCount=1, Placement={"AvailabilityZone": f"{region}a"}
                               )["Instances"][0]["InstanceId"]
    disk = ec2.create_volume(Size=4, AvailabilityZone=f"{region}a",
                             TagSpecifications=[_spec("volume", A, "s000")])["VolumeId"]
    ec2.attach_volume(VolumeId=disk, InstanceId=theirs, Device="/dev/sdf")
    console, buf = _console()

    left = td.teardown(A, profile=None, console=console, delete=True)

    assert [(f.kind, f.id) for f in left] == [("volume", disk)]
    attached = ec2.describe_volumes(VolumeIds=[disk])["Volumes"][0]["Attachments"]
    assert [a["InstanceId"] for a in attached] == [theirs]
    assert f"attached to {theirs}, which is not this session's" in buf.getvalue()


def test_sweep_all_lists_every_session_with_its_cost(world: dict[str, Seeded]) -> None:
    console, buf = _console()
    found = td.sweep_all(profile=None, console=console)

    assert {f.session for f in found} == {A, B}
    assert not {(f.region, f.id) for f in found} & world["untagged"].flat()
    cost = {s: sum(f.hourly_usd or 0 for f in found if f.session == s) for s in (A, B)}
    assert cost[A] > cost[B] > 0  # alpha has 5 running machines and a cluster
    cluster = next(f for f in found if f.kind == "emr-cluster" and f.session == A)
    assert cluster.hourly_usd is not None and cluster.hourly_usd > 0
    assert "3 × m5.xlarge" in cluster.detail
    text = buf.getvalue()
    assert A in text and B in text and "total about $" in text
    assert _all_present(world[A]) and _all_present(world[B])


def test_retry_gives_dependency_violation_time_but_not_forever() -> None:
    calls: list[int] = []
    slept: list[float] = []
    now = [0.0]

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    def in_use_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise AwsError("in use", code="DependencyViolation")
        return "gone"

    assert td.retry(in_use_twice, codes={"DependencyViolation"}, seconds=60,
                    sleep=sleep, clock=lambda: now[0]) == "gone"
    assert len(calls) == 3 and slept == [2.0, 4.0]

    def always_in_use() -> None:
        raise AwsError("in use", code="DependencyViolation")

    slept.clear()
    with pytest.raises(AwsError):
        td.retry(always_in_use, codes={"DependencyViolation"}, seconds=60, sleep=sleep,
                 clock=lambda: now[0])
    assert 0 < sum(slept) <= 60

    def denied() -> None:
        calls.append(1)
        raise AwsError("no", code="AccessDenied")

    calls.clear()
    with pytest.raises(AwsError):
        td.retry(denied, codes={"DependencyViolation"}, seconds=60, sleep=sleep,
                 clock=lambda: now[0])
    assert len(calls) == 1


def _words(text: str) -> str:
    """Output with the console's line wrapping undone."""
    return " ".join(text.split())


def _labkit(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(_aws_env(url, cwd))
    return subprocess.run([sys.executable, "-m", "labkit", *args], check=False, cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)


def test_cli_lists_without_yes_and_deletes_with_it(world: dict[str, Seeded], cloud: str,
                                                   tmp_path: Path) -> None:
    listed = _labkit(["teardown", "--session", A], cloud, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "6 machines" in _words(listed.stdout)
    assert "nothing deleted" in _words(listed.stdout)
    assert _all_present(world[A])

    every = _labkit(["teardown", "--all-sessions", "--dry-run"], cloud, tmp_path)
    assert every.returncode == 0, every.stderr
    assert A in every.stdout and B in every.stdout
    assert "total about $" in _words(every.stdout)

    done = _labkit(["teardown", "--session", A, "--yes"], cloud, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "terminated 6 machines in 3 regions" in _words(done.stdout)
    assert session_tagged_anywhere(A) == []
    assert _all_present(world[B]) and _all_present(world["untagged"])
