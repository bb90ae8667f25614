"""EC2: quotas, images, the session's key pair and security group, seats' instances.

Every create call carries the session tags in ``TagSpecifications`` so that a crash
between create and tag can never leave something teardown cannot find. Look-ups are by
tag and batched: one describe per region per round, never one per seat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from labkit.aws.errors import CAPACITY_CODES, aws_call
from labkit.aws.session import TAG_SEAT, TAG_SESSION, Aws, session_tags, tag_dict
from labkit.errors import AwsError, NotFoundError

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
VCPU_QUOTA_CODE = "L-1216C47A"  # Running On-Demand Standard (A, C, D, H, I, M, R, T, Z)


@dataclass(frozen=True)
class Instance:
    instance_id: str
    region: str
    seat: str
    state: str
    public_ip: str
    private_ip: str
    zone: str
    launch_time: str
    instance_type: str

    @classmethod
    def from_api(cls, region: str, data: dict[str, Any]) -> Instance:
        tags = tag_dict(data.get("Tags"))
        return cls(
            instance_id=data["InstanceId"],
            region=region,
            seat=tags.get(TAG_SEAT, ""),
            state=data.get("State", {}).get("Name", ""),
            public_ip=data.get("PublicIpAddress", "") or "",
            private_ip=data.get("PrivateIpAddress", "") or "",
            zone=data.get("Placement", {}).get("AvailabilityZone", ""),
            launch_time=str(data.get("LaunchTime", "")),
            instance_type=data.get("InstanceType", ""),
        )


def _tag_spec(resource: str, session: str, seat: str | None = None,
              name: str | None = None) -> dict[str, Any]:
    tags = session_tags(session, seat)
    if name:
        tags.append({"Key": "Name", "Value": name})
    return {"ResourceType": resource, "Tags": tags}


def vcpu_quota(aws: Aws, region: str) -> float | None:
    """The account's on-demand vCPU quota in ``region``, or None when AWS won't say."""
    try:
        with aws_call("service-quotas", "reading the vCPU quota", region=region):
            resp = aws.client("service-quotas", region).get_service_quota(
                ServiceCode="ec2", QuotaCode=VCPU_QUOTA_CODE)
            return float(resp["Quota"]["Value"])
    except AwsError:
        return None


def instance_vcpus(aws: Aws, region: str, instance_type: str) -> int | None:
    try:
        with aws_call("ec2", "reading the instance type", region=region):
            resp = aws.client("ec2", region).describe_instance_types(
                InstanceTypes=[instance_type])
    except AwsError:
        return None
    for item in resp.get("InstanceTypes", []):
        return int(item["VCpuInfo"]["DefaultVCpus"])
    return None


def vcpus_in_use(aws: Aws, region: str) -> int | None:
    """vCPUs of all running or pending instances in the region (what the quota counts)."""
    try:
        with aws_call("ec2", "counting running instances", region=region):
            total = 0
            pages = aws.client("ec2", region).get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
            for page in pages:
                for res in page["Reservations"]:
                    for inst in res["Instances"]:
                        cpu = inst.get("CpuOptions", {})
                        total += int(cpu.get("CoreCount", 1)) * int(cpu.get("ThreadsPerCore", 1))
            return total
    except AwsError:
        return None


def resolve_image(aws: Aws, region: str, image: str) -> str:
    """An ``ami-...`` as is, or the value of an ``ssm:`` parameter in that region."""
    if image.startswith("ami-"):
        return image
    name = image.removeprefix("ssm:")
    with aws_call("ssm", f"resolving the image parameter {name}", region=region):
        return str(aws.client("ssm", region).get_parameter(Name=name)["Parameter"]["Value"])


def ensure_key_pair(aws: Aws, region: str, name: str, public_key: str, session: str) -> str:
    ec2 = aws.client("ec2", region)
    try:
        with aws_call("ec2", "looking up the session key pair", region=region):
            found = ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"]
        if found:
            return name
    except NotFoundError:
        pass
    with aws_call("ec2", "importing the session key pair", region=region):
        ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_key.encode(),
                            TagSpecifications=[_tag_spec("key-pair", session)])
    return name


def default_subnets(aws: Aws, region: str) -> list[tuple[str, str]]:
    """(subnet, zone) of the default VPC, one per zone, sorted by zone."""
    with aws_call("ec2", "finding the default VPC's subnets", region=region):
        resp = aws.client("ec2", region).describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    subnets = sorted((s["AvailabilityZone"], s["SubnetId"]) for s in resp["Subnets"])
    if not subnets:
        raise AwsError(f"no default VPC in {region}",
                       hint="create one with `aws ec2 create-default-vpc --region "
                            f"{region}`, or drop the region from `regions`")
    return [(sid, zone) for zone, sid in subnets]


def ensure_security_group(aws: Aws, region: str, session: str, cidr: str) -> str:
    """The session's SSH-only security group in the default VPC, created once."""
    ec2 = aws.client("ec2", region)
    name = f"labkit-{session}"
    with aws_call("ec2", "looking up the security group", region=region):
        found = ec2.describe_security_groups(Filters=[
            {"Name": f"tag:{TAG_SESSION}", "Values": [session]},
            {"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    if found:
        return str(found[0]["GroupId"])
    with aws_call("ec2", "finding the default VPC", region=region):
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise AwsError(f"no default VPC in {region}",
                       hint=f"create one with `aws ec2 create-default-vpc --region {region}`")
    with aws_call("ec2", "creating the security group", region=region):
        group_id = str(ec2.create_security_group(
            GroupName=name, Description=f"labkit session {session}: SSH for students",
            VpcId=vpcs[0]["VpcId"],
            TagSpecifications=[_tag_spec("security-group", session, name=name)])["GroupId"])
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                            "IpRanges": [{"CidrIp": cidr, "Description": "student SSH"}]}],
            TagSpecifications=[_tag_spec("security-group-rule", session)])
    return group_id


def find_instances(aws: Aws, region: str, session: str,
                   states: Sequence[str] = LIVE_STATES) -> list[Instance]:
    """All of the session's instances in a region, in one paginated call."""
    with aws_call("ec2", "listing the session's machines", region=region):
        pages = aws.client("ec2", region).get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{TAG_SESSION}", "Values": [session]},
                     {"Name": "instance-state-name", "Values": list(states)}])
        return [Instance.from_api(region, inst)
                for page in pages for res in page["Reservations"] for inst in res["Instances"]]


def launch(aws: Aws, region: str, *, session: str, seat: str, image_id: str,
           instance_type: str, key_name: str, security_group_id: str, subnet_id: str,
           user_data: str, volume_gb: int, instance_profile_arn: str = "") -> Instance:
    """One seat's machine. The client token makes a retried call return the same machine."""
    token = hashlib.sha256(f"{session}/{seat}/{region}/{subnet_id}".encode()).hexdigest()[:64]
    params: dict[str, Any] = dict(
        ImageId=image_id, InstanceType=instance_type, MinCount=1, MaxCount=1,
        KeyName=key_name, UserData=user_data, ClientToken=token,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_id,
                            "Groups": [security_group_id],
                            "AssociatePublicIpAddress": True}],
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                              "Ebs": {"VolumeSize": volume_gb, "VolumeType": "gp3",
                                      "DeleteOnTermination": True}}],
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        InstanceInitiatedShutdownBehavior="stop",
        TagSpecifications=[_tag_spec("instance", session, seat, name=f"{session}/{seat}"),
                           _tag_spec("volume", session, seat),
                           _tag_spec("network-interface", session, seat)],
    )
    if instance_profile_arn:
        params["IamInstanceProfile"] = {"Arn": instance_profile_arn}
    client = aws.client("ec2", region)
    client.meta.events.register_first("needs-retry.ec2.RunInstances", _capacity_is_final,
                                      unique_id="labkit-capacity-is-final")
    with aws_call("ec2", f"launching the machine for seat {seat}", region=region):
        resp = client.run_instances(**params)
    return Instance.from_api(region, resp["Instances"][0])


def _capacity_is_final(response: Any = None, **_: Any) -> None:
    """No capacity in a zone is answered by trying the next zone, not by waiting.

    EC2 sends InsufficientInstanceCapacity as an HTTP 500, which botocore's retry modes
    retry like any server error, with backoff: up to ~70 s per zone lost before a seat
    moves on. Raising here ends the call at the first answer; throttling and real server
    errors are still retried by botocore (this runs first and lets them through).
    """
    if response is None:
        return
    parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else {}
    code = parsed.get("Error", {}).get("Code", "") if isinstance(parsed, dict) else ""
    if code in CAPACITY_CODES:
        raise botocore.exceptions.ClientError(parsed, "RunInstances")


def _in_batches(ids: Sequence[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(ids), size):
        yield list(ids[i:i + size])


def stop(aws: Aws, region: str, instance_ids: Sequence[str]) -> None:
    for batch in _in_batches(instance_ids):
        with aws_call("ec2", "stopping machines", region=region):
            aws.client("ec2", region).stop_instances(InstanceIds=batch)


def start(aws: Aws, region: str, instance_ids: Sequence[str]) -> None:
    for batch in _in_batches(instance_ids):
        with aws_call("ec2", "starting machines", region=region):
            aws.client("ec2", region).start_instances(InstanceIds=batch)


def terminate(aws: Aws, region: str, instance_ids: Sequence[str]) -> None:
    for batch in _in_batches(instance_ids):
        with aws_call("ec2", "terminating machines", region=region):
            aws.client("ec2", region).terminate_instances(InstanceIds=batch)

