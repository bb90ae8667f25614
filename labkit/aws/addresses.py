"""Elastic IPs for ``stable_addresses = true``: a seat keeps its printed address across
stop/start. Each address is tagged in its allocate call and released at teardown."""

from __future__ import annotations

from labkit.aws.errors import aws_call
from labkit.aws.session import TAG_SEAT, TAG_SESSION, Aws, session_tags


def ensure_address(aws: Aws, region: str, *, session: str, seat: str, instance_id: str,
                   current_ip: str = "") -> tuple[str, str]:
    """The seat's Elastic IP, allocated once and associated with its machine.

    Returns (allocation id, public ip)."""
    ec2 = aws.client("ec2", region)
    with aws_call("ec2", f"looking up the address of seat {seat}", region=region):
        found = ec2.describe_addresses(Filters=[
            {"Name": f"tag:{TAG_SESSION}", "Values": [session]},
            {"Name": f"tag:{TAG_SEAT}", "Values": [seat]}])["Addresses"]
    if found:
        address = found[0]
    else:
        with aws_call("ec2", f"allocating an address for seat {seat}", region=region):
            address = ec2.allocate_address(Domain="vpc", TagSpecifications=[
                {"ResourceType": "elastic-ip", "Tags": session_tags(session, seat)}])
    if address.get("InstanceId") != instance_id or (current_ip
                                                    and current_ip != address["PublicIp"]):
        with aws_call("ec2", f"attaching the address of seat {seat}", region=region):
            ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=instance_id,
                                  AllowReassociation=True)
    return str(address["AllocationId"]), str(address["PublicIp"])
