"""Seat and cluster policies: the allocation guard, IAM lint (parliament), and what a
seat's keys can and cannot do against a moto server enforcing IAM.

moto ignores Condition blocks and parliament does not evaluate anything, so the tag and
prefix scoping is checked on the documents themselves; moto checks the actions and the
S3 resource ARNs, and that the explicit Deny beats a careless Allow.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import boto3
import parliament
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from labkit import policies
from labkit.errors import InputError
from labkit.policies import (
    ALLOCATING_ACTIONS,
    MANAGED_POLICY_MAX_CHARS,
    allows_allocation,
    ec2_trust_policy,
    emr_instance_policy,
    emr_service_role_names,
    emr_service_roles,
    emr_service_trust_policy,
    policy_size,
    seat_policy,
    seat_user_policy,
)

SESSION = "lxmls-2026"
SEAT = "alice"
BUCKET = "labkit-lxmls-2026-0a1b2c"

DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


def _seat(shared: bool = False, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"session": SESSION, "seat": SEAT, "bucket": BUCKET,
                            "region": "eu-west-1", "shared_cluster": shared}
    args.update(overrides)
    return seat_policy(**args)


def _statement(doc: dict[str, Any], sid: str) -> dict[str, Any]:
    matches = [s for s in doc["Statement"] if s.get("Sid") == sid]
    assert len(matches) == 1, f"no single statement {sid!r} in {doc}"
    found: dict[str, Any] = matches[0]
    return found


def _emr_statement(doc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(
        s for s in doc["Statement"]
        if s["Effect"] == "Allow" and any(a.startswith("elasticmapreduce:") for a in s["Action"]))
    return found


PERMISSION_DOCS = {
    "seat-per-seat": lambda: _seat(shared=False),
    "seat-shared": lambda: _seat(shared=True),
    "seat-user": lambda: seat_user_policy(session=SESSION, seat=SEAT, bucket=BUCKET),
    "cluster-per-seat": lambda: emr_instance_policy(session=SESSION, bucket=BUCKET, seat=SEAT),
    "cluster-shared": lambda: emr_instance_policy(session=SESSION, bucket=BUCKET),
}


# -- 1. the allocation guard -----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PERMISSION_DOCS))
def test_labkit_policies_allow_no_allocation(name: str) -> None:
    assert allows_allocation(PERMISSION_DOCS[name]()) == []


@pytest.mark.parametrize("bad, expected", [
    ({"Effect": "Allow", "Action": "ec2:Run*", "Resource": "*"}, "ec2:RunInstances"),
    ({"Effect": "Allow", "Action": "*", "Resource": "*"}, "iam:*"),
    ({"Effect": "Allow", "Action": "*:*", "Resource": "*"}, "elasticmapreduce:RunJobFlow"),
    ({"Effect": "Allow", "Action": ["s3:GetObject", "EC2:runinstances"], "Resource": "*"},
     "EC2:runinstances"),
    ({"Effect": "Allow", "Action": "ec2:*Volume", "Resource": "*"}, "ec2:CreateVolume"),
    ({"Effect": "Allow", "Action": "iam:CreateAccessKey", "Resource": "*"}, "iam:CreateAccessKey"),
    ({"Effect": "Allow", "Action": "elasticmapreduce:*", "Resource": "*"},
     "elasticmapreduce:TerminateJobFlows"),
    ({"Effect": "Allow", "Action": "elasticmapreduce:Add*", "Resource": "*"},
     "elasticmapreduce:AddInstanceGroups"),
    ({"Effect": "Allow", "Action": "s3:Put*", "Resource": "*"}, "s3:PutBucketPolicy"),
    ({"Effect": "Allow", "NotAction": ["s3:*", "iam:*"], "Resource": "*"}, "ec2:RunInstances"),
    # a condition does not make an allocating Allow safe
    ({"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*",
      "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}}, "ec2:RunInstances"),
])
def test_guard_catches_allocating_allows(bad: dict[str, Any], expected: str) -> None:
    for statement in (bad, [bad]):  # a lone statement or a list of them
        found = allows_allocation({"Version": "2012-10-17", "Statement": statement})
        assert expected in found, found


def test_guard_notaction_spares_what_it_excludes() -> None:
    found = allows_allocation({"Statement": [
        {"Effect": "Allow", "NotAction": ["iam:*", "ec2:*"], "Resource": "*"}]})
    assert "iam:*" not in found and "ec2:RunInstances" not in found
    assert "elasticmapreduce:RunJobFlow" in found


def test_guard_catches_the_default_emr_instance_role() -> None:
    # An excerpt of AmazonElasticMapReduceforEC2Role (version 3): what a student's step
    # could do on a cluster left with the default EC2 role.
    default_ec2_role = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Resource": ["*"],
        "Action": ["cloudwatch:*", "dynamodb:*", "ec2:Describe*", "kinesis:CreateStream",
                   "kinesis:DescribeStream", "rds:Describe*", "s3:*", "sdb:*", "sns:*",
                   "sqs:*"],
    }]}
    found = allows_allocation(default_ec2_role)
    assert {"dynamodb:CreateTable", "kinesis:CreateStream", "s3:CreateBucket"} <= set(found)


def test_guard_passes_reads_and_ignores_denies() -> None:
    harmless = {"Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:List*", "ec2:Describe*",
                                       "elasticmapreduce:AddJobFlowSteps",
                                       "elasticmapreduce:Describe*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
    ]}
    assert allows_allocation(harmless) == []


def test_the_deny_statement_is_the_guarded_list() -> None:
    for doc in (_seat(), _seat(shared=True), emr_instance_policy(session=SESSION, bucket=BUCKET)):
        denies = [s for s in doc["Statement"] if s["Effect"] == "Deny"]
        assert len(denies) == 1
        assert denies[0]["Resource"] == "*"
        assert denies[0]["Action"] == list(ALLOCATING_ACTIONS)
        assert "Condition" not in denies[0]


# -- the documents' shape and scoping (what moto and parliament cannot check) ----------

@pytest.mark.parametrize("name", sorted(PERMISSION_DOCS))
def test_documents_are_iam_json_within_the_managed_policy_limit(name: str) -> None:
    doc = PERMISSION_DOCS[name]()
    assert doc["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in doc["Statement"]]
    assert len(set(sids)) == len(sids) and all(sid.isalnum() for sid in sids)
    for s in doc["Statement"]:
        assert s["Effect"] in ("Allow", "Deny") and s["Action"] and s["Resource"]
    json.loads(json.dumps(doc))  # plain data, nothing that needs a custom encoder
    assert policy_size(doc) <= MANAGED_POLICY_MAX_CHARS


def test_longest_names_still_fit() -> None:
    doc = seat_policy(session="s" * 32, seat="x" * 64, bucket="b" * 63,
                      region="ap-southeast-2", partition="aws-us-gov")
    assert policy_size(doc) <= MANAGED_POLICY_MAX_CHARS
    # and it could never be a user's inline policy: that is why it goes in a managed one
    assert policy_size(doc) > policies.USER_INLINE_POLICY_MAX_CHARS


def test_per_seat_cluster_access_needs_both_session_and_seat_tags() -> None:
    emr = _emr_statement(_seat())
    assert emr["Condition"] == {"StringEquals": {
        "aws:ResourceTag/labkit:session": SESSION, "aws:ResourceTag/labkit:seat": SEAT}}
    assert emr["Resource"] == "arn:aws:elasticmapreduce:eu-west-1:*:cluster/*"
    assert "elasticmapreduce:AddJobFlowSteps" in emr["Action"]
    assert "elasticmapreduce:CancelSteps" in emr["Action"]


def test_shared_cluster_access_needs_the_session_tag_and_cannot_cancel() -> None:
    emr = _emr_statement(_seat(shared=True))
    assert emr["Condition"] == {"StringEquals": {"aws:ResourceTag/labkit:session": SESSION}}
    assert "elasticmapreduce:AddJobFlowSteps" in emr["Action"]
    # steps have no owner: on a shared cluster CancelSteps would cancel anyone's job
    assert "elasticmapreduce:CancelSteps" not in emr["Action"]


def test_no_emr_action_is_granted_on_every_cluster() -> None:
    for doc in (_seat(), _seat(shared=True)):
        for s in doc["Statement"]:
            if s["Effect"] == "Allow" and any(a.startswith("elasticmapreduce:")
                                              for a in s["Action"]):
                assert "Condition" in s and s["Resource"] != "*"


def test_bucket_access_is_limited_to_the_seats_prefixes() -> None:
    doc = _seat()
    arn = f"arn:aws:s3:::{BUCKET}"
    listing = _statement(doc, "ListOwnPrefixes")
    assert listing["Resource"] == arn
    assert listing["Condition"] == {"StringLikeIfExists": {"s3:prefix": [
        "materials/*", f"logs/{SEAT}/*", f"seats/{SEAT}/*"]}}
    assert _statement(doc, "ReadShared")["Resource"] == [f"{arn}/materials/*",
                                                        f"{arn}/logs/{SEAT}/*"]
    own = _statement(doc, "ReadWriteOwn")
    assert own["Resource"] == [f"{arn}/seats/{SEAT}/*"]
    assert "s3:PutObject" in own["Action"] and "s3:DeleteObject" in own["Action"]
    # nothing grants writing anywhere else
    for s in doc["Statement"]:
        if s["Effect"] == "Allow" and any("Put" in a or "Delete" in a for a in s["Action"]):
            assert s["Resource"] == [f"{arn}/seats/{SEAT}/*"]


def test_shared_mode_reads_the_session_clusters_logs() -> None:
    read = _statement(_seat(shared=True), "ReadShared")["Resource"]
    assert read == [f"arn:aws:s3:::{BUCKET}/materials/*", f"arn:aws:s3:::{BUCKET}/logs/*"]
    assert policies.cluster_log_uri(BUCKET) == f"s3://{BUCKET}/logs/"
    assert policies.cluster_log_uri(BUCKET, SEAT) == f"s3://{BUCKET}/logs/{SEAT}/"


def test_partition_and_region_reach_the_arns() -> None:
    doc = _seat(partition="aws-cn", region="cn-north-1")
    text = json.dumps(doc)
    assert "arn:aws:" not in text
    assert _emr_statement(doc)["Resource"] == "arn:aws-cn:elasticmapreduce:cn-north-1:*:cluster/*"
    assert _emr_statement(_seat(region=None))["Resource"] == "arn:aws:elasticmapreduce:*:*:cluster/*"


@pytest.mark.parametrize("overrides", [
    {"seat": "*"}, {"seat": "al?ce"}, {"seat": "a/b"}, {"seat": ""}, {"seat": "${aws:username}"},
    {"session": "lx*"}, {"bucket": "Bad_Bucket"}, {"bucket": "*"}, {"region": "*"},
    {"partition": "aws-moon"},
])
def test_names_that_would_widen_a_policy_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        _seat(**overrides)


def test_user_policy_is_the_seat_policy() -> None:
    for shared in (False, True):
        assert seat_user_policy(session=SESSION, seat=SEAT, bucket=BUCKET, region="eu-west-1",
                                shared_cluster=shared) == _seat(shared=shared)


def test_cluster_role_writes_logs_and_scratch_but_not_materials() -> None:
    doc = emr_instance_policy(session=SESSION, bucket=BUCKET, seat=SEAT)
    arn = f"arn:aws:s3:::{BUCKET}"
    assert _statement(doc, "WriteClusterLogs")["Resource"] == f"{arn}/logs/{SEAT}/*"
    assert _statement(doc, "ReadWriteOwn")["Resource"] == [f"{arn}/seats/{SEAT}/*"]
    shared = emr_instance_policy(session=SESSION, bucket=BUCKET)
    assert _statement(shared, "ReadWriteOwn")["Resource"] == [f"{arn}/seats/*/*"]
    for d in (doc, shared):
        assert "materials" not in json.dumps(_statement(d, "ReadWriteOwn"))


# -- trust policies and the default EMR roles ---------------------------------------------

def test_trust_policies_name_one_service_and_nobody_else() -> None:
    for doc, service in ((ec2_trust_policy(), "ec2.amazonaws.com"),
                         (emr_service_trust_policy(), "elasticmapreduce.amazonaws.com")):
        assert doc["Version"] == "2012-10-17"
        [statement] = doc["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": service}
        assert statement["Action"] == "sts:AssumeRole"


def test_emr_trust_policy_can_be_pinned_to_the_account() -> None:
    [statement] = emr_service_trust_policy("123456789012")["Statement"]
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert statement["Condition"]["ArnLike"] == {
        "aws:SourceArn": "arn:aws:elasticmapreduce:*:123456789012:*"}
    with pytest.raises(InputError):
        emr_service_trust_policy("12345")


def test_default_emr_roles() -> None:
    assert emr_service_role_names() == ("EMR_DefaultRole", "EMR_EC2_DefaultRole")
    service, ec2 = emr_service_roles(partition="aws-cn")
    assert (service.name, ec2.name) == emr_service_role_names()
    assert service.managed_policy_arns == (
        "arn:aws-cn:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2",)
    assert ec2.managed_policy_arns == (
        "arn:aws-cn:iam::aws:policy/service-role/AmazonElasticMapReduceforEC2Role",)
    assert ec2.instance_profile and not service.instance_profile
    assert ec2.trust_policy == ec2_trust_policy()
    assert service.trust_policy["Statement"][0]["Principal"] == {
        "Service": "elasticmapreduce.amazonaws.com"}


# -- 2. parliament ----------------------------------------------------------------------

def _parliament_findings(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    policy = parliament.analyze_policy_string(json.dumps(doc), include_community_auditors=True)
    return [(f.severity, f.issue, str(f.detail))
            for f in map(parliament.enhance_finding, policy.findings)]


@pytest.mark.parametrize("name", sorted(PERMISSION_DOCS))
def test_parliament_finds_nothing(name: str) -> None:
    findings = _parliament_findings(PERMISSION_DOCS[name]())
    serious = [f for f in findings if f[0] in ("MEDIUM", "HIGH", "CRITICAL")]
    assert serious == []
    # Nothing at LOW or INFO either today; a new parliament that learns of a renamed or
    # retired action should make us look, so this is strict too.
    assert findings == []


@pytest.mark.parametrize("mutate, issue", [
    (lambda d: _emr_statement(d)["Action"].append("elasticmapreduce:AddJobFlowStep"),
     "UNKNOWN_ACTION"),
    (lambda d: _statement(d, "ListOwnPrefixes")["Condition"]
     .setdefault("StringEquals", {}).update({"s3:prefixx": "x"}),
     "UNKNOWN_CONDITION_FOR_ACTION"),
    (lambda d: d["Statement"].append(dict(d["Statement"][0])), "DUPLICATE_SID"),
])
def test_parliament_would_catch_a_broken_seat_policy(mutate: Any, issue: str) -> None:
    doc = _seat()
    mutate(doc)
    assert issue in {f[1] for f in _parliament_findings(doc)}


# -- 3. enforced by moto ----------------------------------------------------------------

SECRET = b"bob's scratch"
MATERIAL = b"the course reader"

# Calls made as the administrator before moto starts enforcing IAM; the fixture checks
# that enforcement really starts right after them.
ADMIN_SETUP_CALLS = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoIam:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.keys: dict[str, tuple[str, str]] = {}

    def client(self, service: str, who: str = "admin") -> Any:
        key, secret = self.keys.get(who, ("testing-admin", "testing-admin"))
        session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                        region_name="us-east-1")
        return session.client(service, endpoint_url=self.endpoint, config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def moto_iam() -> Iterator[MotoIam]:
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(ADMIN_SETUP_CALLS)}
    env.pop("AWS_ENDPOINT_URL", None)
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        pytest.fail("moto server did not start:\n"
                                    + log.read().decode(errors="replace")[-2000:])
                    time.sleep(0.1)
            moto = MotoIam(f"http://127.0.0.1:{port}")
            _set_up_as_admin(moto)
            yield moto
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _set_up_as_admin(moto: MotoIam) -> None:
    s3, iam = moto.client("s3"), moto.client("iam")
    s3.create_bucket(Bucket=BUCKET)                                                # 1
    s3.put_object(Bucket=BUCKET, Key="materials/reader.txt", Body=MATERIAL)        # 2
    s3.put_object(Bucket=BUCKET, Key="seats/bob/notes.txt", Body=SECRET)           # 3
    # A managed policy, as labkit must: a user's inline policies may hold 2,048 characters.
    arn = iam.create_policy(PolicyName=f"labkit-{SESSION}-{SEAT}",                 # 4
                            PolicyDocument=json.dumps(_seat()))["Policy"]["Arn"]
    iam.create_user(UserName=SEAT)                                                 # 5
    iam.attach_user_policy(UserName=SEAT, PolicyArn=arn)                           # 6
    key = iam.create_access_key(UserName=SEAT)["AccessKey"]                        # 7
    moto.keys[SEAT] = (key["AccessKeyId"], key["SecretAccessKey"])
    # The same seat, plus an "allow everything" policy attached by mistake.
    everything = iam.create_policy(PolicyName="oops-allow-all", PolicyDocument=json.dumps(  # 8
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
    iam.create_user(UserName="careless")                                           # 9
    iam.attach_user_policy(UserName="careless", PolicyArn=arn)                     # 10
    iam.attach_user_policy(UserName="careless", PolicyArn=everything)              # 11
    key = iam.create_access_key(UserName="careless")["AccessKey"]                  # 12
    moto.keys["careless"] = (key["AccessKeyId"], key["SecretAccessKey"])
    # From here on moto must check every request: the admin's made-up keys now fail.
    with pytest.raises(ClientError) as refused:
        iam.list_users()
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId", \
        "moto is not enforcing IAM yet: ADMIN_SETUP_CALLS does not match the set-up"


def _assert_denied(call: Any, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as denied:
        call(**kwargs)
    error = denied.value.response["Error"]
    code = error["Code"]
    if code == "403":
        # moto answers JSON-protocol services (EMR) with an XML error body, which
        # botocore cannot parse; the code is inside the message.
        found = re.search(r"<Code>(\w+)</Code>", error.get("Message", ""))
        code = found.group(1) if found else code
    assert code in DENIED_CODES, denied.value.response


def _allocation_attempts(moto: MotoIam, who: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    ec2, emr, iam = moto.client("ec2", who), moto.client("emr", who), moto.client("iam", who)
    return {
        "RunInstances": (ec2.run_instances, {"ImageId": "ami-12c6146b", "MinCount": 1,
                                             "MaxCount": 1, "InstanceType": "t3.medium"}),
        "RequestSpotInstances": (ec2.request_spot_instances, {
            "InstanceCount": 1, "LaunchSpecification": {"ImageId": "ami-12c6146b",
                                                        "InstanceType": "t3.medium"}}),
        "TerminateInstances": (ec2.terminate_instances,
                               {"InstanceIds": ["i-0123456789abcdef0"]}),
        "CreateVolume": (ec2.create_volume, {"AvailabilityZone": "us-east-1a", "Size": 500}),
        "RunJobFlow": (emr.run_job_flow, {
            "Name": "mine", "ReleaseLabel": "emr-7.5.0", "JobFlowRole": "EMR_EC2_DefaultRole",
            "ServiceRole": "EMR_DefaultRole",
            "Instances": {"InstanceCount": 3, "MasterInstanceType": "m5.xlarge",
                          "SlaveInstanceType": "m5.xlarge"}}),
        "TerminateJobFlows": (emr.terminate_job_flows, {"JobFlowIds": ["j-2AXXXXXXGAPLF"]}),
        "CreateUser": (iam.create_user, {"UserName": "mallory"}),
        "CreateAccessKey": (iam.create_access_key, {"UserName": SEAT}),
        "CreateBucket": (moto.client("s3", who).create_bucket, {"Bucket": "another-bucket"}),
    }


@pytest.mark.parametrize("who", [SEAT, "careless"])
@pytest.mark.parametrize("action", ["RunInstances", "RequestSpotInstances", "TerminateInstances",
                                    "CreateVolume", "RunJobFlow", "TerminateJobFlows",
                                    "CreateUser", "CreateAccessKey", "CreateBucket"])
def test_moto_denies_allocation(moto_iam: MotoIam, who: str, action: str) -> None:
    call, kwargs = _allocation_attempts(moto_iam, who)[action]
    _assert_denied(call, **kwargs)


def test_moto_lets_the_seat_use_its_own_prefixes(moto_iam: MotoIam) -> None:
    s3 = moto_iam.client("s3", SEAT)
    body = s3.get_object(Bucket=BUCKET, Key="materials/reader.txt")["Body"].read()
    assert body == MATERIAL
    s3.put_object(Bucket=BUCKET, Key=f"seats/{SEAT}/tmp/job/out.txt", Body=b"42")
    assert s3.get_object(Bucket=BUCKET,
                         Key=f"seats/{SEAT}/tmp/job/out.txt")["Body"].read() == b"42"
    s3.delete_object(Bucket=BUCKET, Key=f"seats/{SEAT}/tmp/job/out.txt")


def test_moto_keeps_the_seat_out_of_the_rest_of_the_bucket(moto_iam: MotoIam) -> None:
    s3 = moto_iam.client("s3", SEAT)
    _assert_denied(s3.get_object, Bucket=BUCKET, Key="seats/bob/notes.txt")
    _assert_denied(s3.put_object, Bucket=BUCKET, Key="seats/bob/notes.txt", Body=b"x")
    _assert_denied(s3.delete_object, Bucket=BUCKET, Key="seats/bob/notes.txt")
    _assert_denied(s3.put_object, Bucket=BUCKET, Key="materials/reader.txt", Body=b"x")
    _assert_denied(s3.put_object, Bucket=BUCKET, Key="logs/alice/fake.log", Body=b"x")
    _assert_denied(s3.put_bucket_policy, Bucket=BUCKET, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                 "Action": "s3:GetObject",
                                                 "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}))
    # The careless user's keys do work (its Allow-all lets it read this), so its refusals
    # in test_moto_denies_allocation come from the Deny, not from bad credentials.
    careless = moto_iam.client("s3", "careless")
    assert careless.get_object(Bucket=BUCKET, Key="seats/bob/notes.txt")["Body"].read() == SECRET
