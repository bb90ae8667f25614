"""IAM: a role + instance profile per seat (and per cluster), users for the access-keys
mode, the account's default EMR roles. Global, so the region is us-east-1 by convention.

Policies come from ``labkit.policies`` (data), and every one is checked by
``policies.allows_allocation`` before it is sent: labkit refuses to create a role that
could start or destroy anything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from labkit import policies
from labkit.aws.errors import aws_call
from labkit.aws.session import Aws, session_tags
from labkit.errors import AwsError, NotFoundError

IAM_REGION = "us-east-1"
PATH = "/labkit/"


def iam_name(session: str, seat: str | None, suffix: str = "") -> str:
    """``labkit-<session>-<seat>[-suffix]``, shortened with a hash to IAM's 64 characters."""
    parts = ["labkit", session] + ([seat] if seat else []) + ([suffix] if suffix else [])
    name = "-".join(parts)
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:55]}-{digest}"


def _guard(doc: dict[str, Any], what: str) -> str:
    bad = policies.allows_allocation(doc)
    if bad:
        raise AwsError(f"refusing to create {what}: its policy would allow {', '.join(bad)}")
    return json.dumps(doc, separators=(",", ":"))


def ensure_role(aws: Aws, name: str, *, trust: dict[str, Any], policy: dict[str, Any] | None,
                session: str, seat: str | None, instance_profile: bool = True) -> str:
    """Role (+ inline policy, + instance profile of the same name); returns the profile ARN
    (or the role ARN without a profile). Found again by name on re-run."""
    iam = aws.client("iam", IAM_REGION)
    tags = session_tags(session, seat)
    try:
        with aws_call("iam", f"looking up role {name}"):
            iam.get_role(RoleName=name)
    except NotFoundError:
        with aws_call("iam", f"creating role {name}"):
            iam.create_role(RoleName=name, Path=PATH, AssumeRolePolicyDocument=json.dumps(trust),
                            Description=f"labkit session {session}"
                                        + (f", seat {seat}" if seat else ""),
                            MaxSessionDuration=3600 * 12, Tags=tags)
    if policy is not None:
        doc = _guard(policy, f"role {name}")
        with aws_call("iam", f"setting the policy of role {name}"):
            iam.put_role_policy(RoleName=name, PolicyName="labkit", PolicyDocument=doc)
    if not instance_profile:
        with aws_call("iam", f"reading role {name}"):
            return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    try:
        with aws_call("iam", f"looking up instance profile {name}"):
            prof = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except NotFoundError:
        with aws_call("iam", f"creating instance profile {name}"):
            prof = iam.create_instance_profile(InstanceProfileName=name, Path=PATH,
                                               Tags=tags)["InstanceProfile"]
    if not any(r["RoleName"] == name for r in prof.get("Roles", [])):
        with aws_call("iam", f"adding role {name} to its instance profile"):
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return str(prof["Arn"])


def ensure_user_with_key(aws: Aws, name: str, *, policy: dict[str, Any], session: str,
                         seat: str, known_key_id: str = "") -> tuple[str, str] | None:
    """The seat's restricted IAM user; a new access key only when none is known.

    Returns (key id, secret) when a key was created, None when ``known_key_id`` is
    still the user's key. The policy is a managed policy (a user's inline policies may
    hold only 2,048 characters), named like the user and tagged like it.
    """
    iam = aws.client("iam", IAM_REGION)
    tags = session_tags(session, seat)
    try:
        with aws_call("iam", f"looking up user {name}"):
            iam.get_user(UserName=name)
    except NotFoundError:
        with aws_call("iam", f"creating user {name}"):
            iam.create_user(UserName=name, Path=PATH, Tags=tags)
    account = aws.account_id()
    arn = f"arn:aws:iam::{account}:policy{PATH}{name}"
    doc = _guard(policy, f"user {name}")
    try:
        with aws_call("iam", f"looking up policy {name}"):
            iam.get_policy(PolicyArn=arn)
    except NotFoundError:
        with aws_call("iam", f"creating policy {name}"):
            arn = iam.create_policy(PolicyName=name, Path=PATH, PolicyDocument=doc,
                                    Tags=tags)["Policy"]["Arn"]
    with aws_call("iam", f"attaching the policy of user {name}"):
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
        keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    if known_key_id and any(k["AccessKeyId"] == known_key_id for k in keys):
        return None
    with aws_call("iam", f"creating an access key for user {name}"):
        for k in keys:  # a key whose secret labkit lost is useless: replace it
            iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
        key = iam.create_access_key(UserName=name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def ensure_emr_default_roles(aws: Aws) -> None:
    """EMR_DefaultRole and EMR_EC2_DefaultRole, created only if the account lacks them.

    They belong to the account, not the session (other classes and tools use them), so
    they carry no session tag and teardown leaves them; they cost nothing.
    """
    iam = aws.client("iam", IAM_REGION)
    for role in policies.emr_service_roles():
        try:
            with aws_call("iam", f"looking up {role.name}"):
                iam.get_role(RoleName=role.name)
            continue
        except NotFoundError:
            pass
        with aws_call("iam", f"creating {role.name}"):
            iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=json.dumps(
                role.trust_policy), Tags=[{"Key": "labkit:created", "Value": "default-emr-role"}])
            for arn in role.managed_policy_arns:
                try:
                    iam.attach_role_policy(RoleName=role.name, PolicyArn=arn)
                except Exception:  # an emulator without AWS managed policies
                    pass
            if role.instance_profile:
                iam.create_instance_profile(InstanceProfileName=role.name)
                iam.add_role_to_instance_profile(InstanceProfileName=role.name,
                                                 RoleName=role.name)

