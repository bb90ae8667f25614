"""IAM policies for seats and clusters, as data: pure functions, no AWS calls.

What a student may do, from the seat's machine (an instance profile) or, in the
``access-keys`` mode, with the seat's own IAM user:

* submit jobs (EMR steps) to the seat's cluster and watch them, nothing else on EMR;
* read ``materials/``, read and write ``seats/<seat>/``, read the cluster's logs;
* never allocate or destroy anything: every action in :data:`ALLOCATING_ACTIONS` is
  denied outright, so that even a broader policy attached later by mistake cannot
  bring it back (an explicit Deny beats any Allow).

The session bucket is laid out as::

    s3://<bucket>/materials/        read-only for every seat
    s3://<bucket>/logs/<seat>/      EMR logs of that seat's cluster (per-seat mode)
    s3://<bucket>/logs/             EMR logs of the session's cluster (shared mode)
    s3://<bucket>/seats/<seat>/     the seat's scratch; mrjob's cloud_tmp_dir is tmp/ below

so a cluster must be created with ``LogUri=cluster_log_uri(bucket, seat)``: mrjob reads a
failed step's stderr and the job's counters from ``<LogUri><cluster-id>/``, and a seat
can read only its own cluster's logs.

Sizes: IAM counts a policy without whitespace. A managed policy may hold 6,144
characters, but all the inline policies of one IAM *user* together only 2,048, which a
seat policy exceeds; so attach the seat policy as a customer managed policy (one per
seat, attached to both the seat's role and, in access-keys mode, its user), or inline
on the role (10,240), never inline on the user.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from labkit.errors import InputError

SESSION_TAG = "labkit:session"
SEAT_TAG = "labkit:seat"

POLICY_VERSION = "2012-10-17"
MANAGED_POLICY_MAX_CHARS = 6144
ROLE_INLINE_POLICY_MAX_CHARS = 10240
USER_INLINE_POLICY_MAX_CHARS = 2048

MATERIALS_PREFIX = "materials/"
LOGS_PREFIX = "logs/"
SEATS_PREFIX = "seats/"

# AmazonEMRServicePolicy_v2 only lets EMR act on resources carrying this tag: the
# cluster (EMR propagates it to the instances it launches) and any subnet or security
# group that EMR did not create itself.
EMR_MANAGED_POLICY_TAG = ("for-use-with-amazon-emr-managed-policies", "true")

# Everything that starts something billable, makes something cost more, or destroys or
# hides what labkit made. Denied to every seat; allows_allocation() checks Allow
# statements against it before labkit creates a role. Patterns use IAM's wildcards.
ALLOCATING_ACTIONS: tuple[str, ...] = (
    # EC2 compute: instances, fleets and spot requests bill by the second; a started
    # (stopped) machine bills again; a new instance type or tenancy bills more.
    "ec2:RunInstances",
    "ec2:StartInstances",
    "ec2:RequestSpotInstances",
    "ec2:RequestSpotFleet",
    "ec2:CreateFleet",
    "ec2:ModifyFleet",
    "ec2:ModifySpotFleetRequest",
    "ec2:ModifyInstanceAttribute",
    "ec2:RunScheduledInstances",
    "ec2:AllocateHosts",
    "ec2:CreateCapacityReservation*",
    # EC2 commitments: reserved instances, host reservations, capacity blocks are paid
    # up front or for a term, whether used or not.
    "ec2:Purchase*",
    "ec2:AcceptReservedInstancesExchangeQuote",
    # EC2 storage: volumes, snapshots and images bill per GB-month until deleted.
    "ec2:CreateVolume",
    "ec2:ModifyVolume",
    "ec2:CreateSnapshot*",
    "ec2:CopySnapshot",
    "ec2:CreateImage",
    "ec2:CopyImage",
    "ec2:CreateRestoreImageTask",
    "ec2:Import*",
    "ec2:EnableFastSnapshotRestores",
    "ec2:EnableFastLaunch",
    # EC2 networking billed by the hour or the GB: addresses, NAT, endpoints, VPNs.
    "ec2:AllocateAddress",
    "ec2:CreateNatGateway",
    "ec2:CreateVpcEndpoint",
    "ec2:CreateTransitGateway*",
    "ec2:CreateVpnConnection",
    "ec2:CreateClientVpnEndpoint",
    "ec2:AssociateClientVpnTargetNetwork",
    "ec2:CreateTrafficMirrorSession",
    "ec2:CreateIpam",
    # EC2 destruction and disruption: other seats' machines, volumes, addresses.
    "ec2:TerminateInstances",
    "ec2:StopInstances",
    "ec2:Delete*",
    # Tags: teardown finds resources by tag; retagging would hide one from it, or put
    # a stranger's resource under it; tag conditions would stop meaning anything.
    "ec2:CreateTags",
    "elasticmapreduce:AddTags",
    "elasticmapreduce:RemoveTags",
    "s3:PutBucketTagging",
    # EMR: a new cluster, more or bigger nodes, a cluster that will not end when idle,
    # or the end of a cluster someone is using.
    "elasticmapreduce:RunJobFlow",
    "elasticmapreduce:TerminateJobFlows",
    "elasticmapreduce:AddInstanceGroups",
    "elasticmapreduce:ModifyInstanceGroups",
    "elasticmapreduce:AddInstanceFleet",
    "elasticmapreduce:ModifyInstanceFleet",
    "elasticmapreduce:PutAutoScalingPolicy",
    "elasticmapreduce:PutManagedScalingPolicy",
    "elasticmapreduce:PutAutoTerminationPolicy",
    "elasticmapreduce:RemoveAutoTerminationPolicy",
    "elasticmapreduce:SetTerminationProtection",
    "elasticmapreduce:SetKeepJobFlowAliveWhenNoSteps",
    "elasticmapreduce:StartNotebookExecution",
    "emr-serverless:CreateApplication",
    "emr-serverless:StartApplication",
    "emr-serverless:StartJobRun",
    "emr-containers:CreateVirtualCluster",
    "emr-containers:StartJobRun",
    # Escalation is allocation by proxy: a new user, key, role, or a passed role can do
    # what the seat cannot; so can a role assumed from the seat.
    "iam:*",
    "sts:AssumeRole",
    "organizations:CreateAccount",
    # Other compute billed by time: functions, containers, batch, Kubernetes, scaling
    # groups, stacks (which create anything their role can), Lightsail, SageMaker,
    # Glue, build and desktop services.
    "lambda:CreateFunction",
    "lambda:PutProvisionedConcurrencyConfig",
    "ecs:RunTask",
    "ecs:StartTask",
    "ecs:CreateService",
    "ecs:UpdateService",
    "batch:SubmitJob",
    "batch:CreateComputeEnvironment",
    "eks:CreateCluster",
    "eks:CreateNodegroup",
    "autoscaling:CreateAutoScalingGroup",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:SetDesiredCapacity",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:CreateStackSet",
    "lightsail:*",
    "sagemaker:Create*",
    "sagemaker:StartNotebookInstance",
    "glue:Create*",
    "glue:StartJobRun",
    "glue:StartCrawler",
    "elasticbeanstalk:CreateEnvironment",
    "apprunner:CreateService",
    "workspaces:CreateWorkspaces",
    "cloud9:CreateEnvironmentEC2",
    "codebuild:StartBuild",
    # Databases, caches, search and streams bill by the hour or by provisioned capacity.
    "redshift:Create*",
    "redshift:RestoreFromClusterSnapshot",
    "redshift-serverless:Create*",
    "rds:Create*",
    "rds:Start*",
    "rds:Restore*",
    "elasticache:Create*",
    "es:Create*",
    "dynamodb:CreateTable",
    "dynamodb:UpdateTable",
    "dynamodb:RestoreTable*",
    "kinesis:CreateStream",
    "kinesis:UpdateShardCount",
    "kafka:Create*",
    "firehose:CreateDeliveryStream",
    # S3 beyond objects: new buckets escape teardown; public buckets or objects bill
    # for everyone's downloads; versioning, replication and lifecycle changes make
    # storage grow; restores from archive bill per GB; deleting the bucket destroys it.
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:PutBucketPolicy",
    "s3:PutBucketAcl",
    "s3:PutObjectAcl",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutReplicationConfiguration",
    "s3:PutAccelerateConfiguration",
    "s3:RestoreObject",
    # Purchases: domains, subscriptions and commitments bill for a year or more.
    "route53domains:RegisterDomain",
    "route53domains:TransferDomain",
    "aws-marketplace:Subscribe",
    "savingsplans:CreateSavingsPlan",
    "shield:CreateSubscription",
)

# What a seat may do on its cluster, and why (all read-only except the first two):
#   AddJobFlowSteps       submitting a job is the point (mrjob's EMR runner with cluster_id)
#   CancelSteps           stop one's own runaway job; per-seat only, since EMR steps carry
#                         no owner and on a shared cluster it would cancel anyone's
#   DescribeCluster       mrjob: state, release label, applications, master DNS, LogUri
#   DescribeStep          mrjob polls every step it submitted until it ends
#   ListSteps             `aws emr list-steps`: the student finds their jobs again
#   ListInstances         mrjob: the master's private address (SSH tunnel, worker logs)
#   ListInstanceGroups    mrjob checks a cluster's memory before a Spark step
#   ListInstanceFleets    the same, for fleet clusters
# Left out: ListClusters (Resource "*" only, so it would show every cluster in the
# account, other classes' included; the cluster id is in the seat's mrjob.conf),
# DescribeJobFlows (deprecated), ListBootstrapActions (nothing a student runs needs it).
_EMR_READ_ACTIONS = (
    "elasticmapreduce:DescribeCluster",
    "elasticmapreduce:DescribeStep",
    "elasticmapreduce:ListSteps",
    "elasticmapreduce:ListInstances",
    "elasticmapreduce:ListInstanceGroups",
    "elasticmapreduce:ListInstanceFleets",
)
_EMR_SUBMIT = "elasticmapreduce:AddJobFlowSteps"
_EMR_CANCEL = "elasticmapreduce:CancelSteps"

# Object actions on the seat's own prefix. AbortMultipartUpload lets boto3 (mrjob's
# uploads over 100 MB are multipart) clean up a failed upload, whose parts would
# otherwise be billed until the bucket's lifecycle rule removes them.
_SCRATCH_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
)

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

Policy = dict[str, Any]


@dataclass(frozen=True)
class ServiceRole:
    """A role EMR needs in the account; created only if the account lacks it."""

    name: str
    trust_policy: Policy
    managed_policy_arns: tuple[str, ...]
    instance_profile: bool  # EMR wants an instance profile with the role's own name


def ec2_trust_policy() -> Policy:
    """Trust policy of a seat's role: only EC2 (the seat's machine) may assume it."""
    return _document([{
        "Sid": "Ec2AssumesSeatRole",
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }])


def seat_prefix(seat: str) -> str:
    """The seat's scratch prefix in the session bucket, ``seats/<seat>/``."""
    return f"{SEATS_PREFIX}{_checked_name(seat, 'seat')}/"


def cluster_log_prefix(seat: str | None = None) -> str:
    """Where a cluster's EMR logs go: ``logs/<seat>/`` per seat, ``logs/`` when shared."""
    return f"{LOGS_PREFIX}{_checked_name(seat, 'seat')}/" if seat else LOGS_PREFIX


def cluster_log_uri(bucket: str, seat: str | None = None) -> str:
    """The ``LogUri`` to create a cluster with, so its seat(s) can read its logs."""
    return f"s3://{_checked_bucket(bucket)}/{cluster_log_prefix(seat)}"


def seat_policy(*, session: str, seat: str, bucket: str, region: str | None = None,
                partition: str = "aws", shared_cluster: bool = False) -> Policy:
    """The permissions of one seat: its role's policy, and its user's in access-keys mode.

    ``region`` narrows the cluster ARNs to one region (default: any). On a shared cluster
    the seat may use any cluster tagged with the session; otherwise only the cluster
    tagged with both the session and the seat (seat names repeat across sessions).
    """
    _checked_name(session, "session")
    scratch = seat_prefix(seat)
    logs = cluster_log_prefix(None if shared_cluster else seat)
    bucket_arn = _bucket_arn(bucket, partition)

    tags = {f"aws:ResourceTag/{SESSION_TAG}": session}
    emr_actions = [_EMR_SUBMIT, *_EMR_READ_ACTIONS]
    if not shared_cluster:
        tags[f"aws:ResourceTag/{SEAT_TAG}"] = seat
        emr_actions.insert(1, _EMR_CANCEL)

    return _document([
        {
            "Sid": "SubmitStepsToSessionCluster" if shared_cluster else "SubmitStepsToSeatCluster",
            "Effect": "Allow",
            "Action": emr_actions,
            "Resource": _cluster_arn(region, partition),
            "Condition": {"StringEquals": tags},
        },
        *_bucket_statements(bucket_arn, read=[MATERIALS_PREFIX, logs], write=[scratch]),
        _deny_allocation(),
    ])


def seat_user_policy(*, session: str, seat: str, bucket: str, region: str | None = None,
                     partition: str = "aws", shared_cluster: bool = False) -> Policy:
    """The seat's IAM user (access-keys mode) gets exactly the seat role's permissions.

    One function so the two can never drift apart. Attach it as a managed policy: it is
    larger than the 2,048 characters all of a user's inline policies may hold.
    """
    return seat_policy(session=session, seat=seat, bucket=bucket, region=region,
                       partition=partition, shared_cluster=shared_cluster)


def emr_instance_policy(*, session: str, bucket: str, seat: str | None = None,
                        partition: str = "aws") -> Policy:
    """What the cluster's own nodes may do: the role behind its EC2 instance profile.

    A student's step runs arbitrary code on the cluster with this role, so it must not
    be able to allocate either. AWS's AmazonElasticMapReduceforEC2Role (deprecated)
    grants ``dynamodb:*``, ``kinesis:CreateStream``, ``s3:*`` on every bucket: use this
    policy on a labkit role instead (role and instance profile with the same name).

    ``seat`` is the seat of a per-seat cluster; ``None`` is the session's shared cluster,
    which runs every seat's jobs and so reads and writes every seat's prefix.
    """
    _checked_name(session, "session")
    bucket_arn = _bucket_arn(bucket, partition)
    scratch = seat_prefix(seat) if seat else f"{SEATS_PREFIX}*/"
    return _document([
        *_bucket_statements(bucket_arn, read=[MATERIALS_PREFIX], write=[scratch]),
        {
            "Sid": "WriteClusterLogs",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/{cluster_log_prefix(seat)}*",
        },
        {
            # EMR's own regional buckets hold the scripts and jars its steps run.
            "Sid": "ReadEmrLibraries",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:{partition}:s3:::*.elasticmapreduce/*",
        },
        _deny_allocation(),
    ])


def emr_service_role_names() -> tuple[str, str]:
    """The default EMR roles labkit creates if the account lacks them: (service, EC2)."""
    return ("EMR_DefaultRole", "EMR_EC2_DefaultRole")


def emr_service_trust_policy(account: str | None = None, partition: str = "aws") -> Policy:
    """EMR may assume the service role; with ``account``, only for this account's clusters
    (``aws:SourceAccount``/``aws:SourceArn`` guard against the confused deputy)."""
    statement: dict[str, Any] = {
        "Sid": "EmrAssumesServiceRole",
        "Effect": "Allow",
        "Principal": {"Service": "elasticmapreduce.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    if account:
        if not re.fullmatch(r"\d{12}", account):
            raise InputError(f"not an AWS account id: {account!r}", key="account")
        statement["Condition"] = {
            "StringEquals": {"aws:SourceAccount": account},
            "ArnLike": {"aws:SourceArn": f"arn:{_checked_partition(partition)}"
                                          f":elasticmapreduce:*:{account}:*"},
        }
    return _document([statement])


def emr_managed_policy_arn(name: str, partition: str = "aws") -> str:
    """ARN of an AWS managed EMR policy (they live under ``service-role/``)."""
    return f"arn:{_checked_partition(partition)}:iam::aws:policy/service-role/{name}"


def emr_service_roles(partition: str = "aws",
                      account: str | None = None) -> tuple[ServiceRole, ServiceRole]:
    """The two default EMR roles, with trust policies and managed policies to attach.

    The service role gets AmazonEMRServicePolicy_v2, which replaces the deprecated
    AmazonElasticMapReduceRole and acts only on resources tagged
    :data:`EMR_MANAGED_POLICY_TAG`: clusters must be created with that tag, and a
    subnet or security group labkit brings must carry it too. The EC2 role gets
    AmazonElasticMapReduceforEC2Role, on its way to deprecation with no replacement
    and far too broad for students' steps (see :func:`emr_instance_policy`); it is here
    only for accounts that expect the defaults.
    """
    service, ec2 = emr_service_role_names()
    return (
        ServiceRole(service, emr_service_trust_policy(account, partition),
                    (emr_managed_policy_arn("AmazonEMRServicePolicy_v2", partition),),
                    instance_profile=False),
        ServiceRole(ec2, ec2_trust_policy(),
                    (emr_managed_policy_arn("AmazonElasticMapReduceforEC2Role", partition),),
                    instance_profile=True),
    )


def allows_allocation(policy: Policy) -> list[str]:
    """The allocating actions that the policy's Allow statements grant; [] if none.

    Each Allow action (wildcards included) is compared with each pattern of
    :data:`ALLOCATING_ACTIONS`: if some action name could match both, the narrower of
    the two is reported (``"*"`` against ``"iam:*"`` reports ``"iam:*"``;
    ``"iam:CreateUser"`` reports itself). ``NotAction`` grants every pattern it does not
    cover. Conditions and Deny statements are ignored on purpose: the guard asks what
    the Allow statements would hand out, so a Deny cannot hide a careless Allow.
    """
    found: set[str] = set()
    for statement in _statements(policy):
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement:
            excluded = _as_list(statement["NotAction"])
            found.update(p for p in ALLOCATING_ACTIONS
                         if not any(_covers(n, p) for n in excluded))
            continue
        for action in _as_list(statement.get("Action", [])):
            for pattern in ALLOCATING_ACTIONS:
                if _globs_overlap(action.lower(), pattern.lower()):
                    found.add(_narrower(action, pattern))
    return sorted(found)


def policy_size(policy: Policy) -> int:
    """Characters IAM counts against a policy quota (it does not count whitespace)."""
    return len(json.dumps(policy, separators=(",", ":")))


# -- building blocks ------------------------------------------------------------------

def _document(statements: list[dict[str, Any]]) -> Policy:
    return {"Version": POLICY_VERSION, "Statement": copy.deepcopy(statements)}


def _deny_allocation() -> dict[str, Any]:
    return {
        "Sid": "NeverAllocateOrDestroy",
        "Effect": "Deny",
        "Action": list(ALLOCATING_ACTIONS),
        "Resource": "*",
    }


def _bucket_statements(bucket_arn: str, *, read: list[str],
                       write: list[str]) -> list[dict[str, Any]]:
    """Listing, reading and writing under some prefixes of one bucket, and no more.

    ``s3:prefix`` limits listing to those prefixes. The ``IfExists`` form is needed
    because HeadBucket is authorised as ``s3:ListBucket`` without any prefix, and mrjob
    calls it before every upload (a 403 there fails the job); a listing that does name
    a prefix is still held to the list.
    """
    prefixes = [*read, *write]
    return [
        {
            "Sid": "FindBucketRegion",
            "Effect": "Allow",
            "Action": "s3:GetBucketLocation",
            "Resource": bucket_arn,
        },
        {
            "Sid": "ListOwnPrefixes",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLikeIfExists": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        },
        {
            "Sid": "ReadShared",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [f"{bucket_arn}/{p}*" for p in read],
        },
        {
            "Sid": "ReadWriteOwn",
            "Effect": "Allow",
            "Action": list(_SCRATCH_ACTIONS),
            "Resource": [f"{bucket_arn}/{p}*" for p in write],
        },
    ]


def _cluster_arn(region: str | None, partition: str) -> str:
    if region is not None and not _REGION_RE.match(region):
        raise InputError(f"not an AWS region: {region!r}", key="region")
    return f"arn:{_checked_partition(partition)}:elasticmapreduce:{region or '*'}:*:cluster/*"


def _bucket_arn(bucket: str, partition: str) -> str:
    return f"arn:{_checked_partition(partition)}:s3:::{_checked_bucket(bucket)}"


def _checked_name(value: str | None, what: str) -> str:
    # A '*' or '?' in a seat name would widen every ARN and prefix it is put into.
    if not value or not _NAME_RE.match(value):
        raise InputError(f"{what} name {value!r} cannot go into an IAM policy",
                         key=what, hint="use letters, digits, '.', '_' and '-' only")
    return value


def _checked_bucket(bucket: str) -> str:
    if not _BUCKET_RE.match(bucket or "") or ".." in bucket:
        raise InputError(f"not an S3 bucket name: {bucket!r}", key="bucket")
    return bucket


def _checked_partition(partition: str) -> str:
    if partition not in _PARTITIONS:
        raise InputError(f"unknown AWS partition {partition!r}", key="partition",
                         hint=f"one of {', '.join(_PARTITIONS)}")
    return partition


# -- the allocation guard -------------------------------------------------------------

def _statements(policy: Policy) -> list[dict[str, Any]]:
    statements = policy.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@functools.lru_cache(maxsize=4096)
def _globs_overlap(a: str, b: str) -> bool:
    """Could one string match both IAM patterns (``*`` any run, ``?`` one character)?"""
    if not a or not b:
        rest = a or b
        return rest.strip("*") == ""
    if a[0] == "*":
        return _globs_overlap(a[1:], b) or _globs_overlap(a, b[1:])
    if b[0] == "*":
        return _globs_overlap(a, b[1:]) or _globs_overlap(a[1:], b)
    if a[0] == b[0] or "?" in (a[0], b[0]):
        return _globs_overlap(a[1:], b[1:])
    return False


def _covers(pattern: str, inner: str) -> bool:
    """Does ``pattern`` match every name ``inner`` can match? (wildcards in ``inner``
    are taken literally, which is exact when ``pattern`` has its ``*`` there)"""
    return fnmatch.fnmatchcase(inner.lower(), pattern.lower())


def _narrower(action: str, pattern: str) -> str:
    if not any(c in action for c in "*?"):
        return action
    if not any(c in pattern for c in "*?") or _covers(action, pattern):
        return pattern
    return action
