"""Finding a session's resources, in every enabled region. Read-only.

Every kind is found with its own service's list or describe call and kept only if the
tags that call returned carry ``labkit:session`` (the value labkit looks for, or any
value when sweeping all sessions). A filter on the request narrows the answer; the
check on the answer is what decides, so an emulator or a filter that over-matches can
never make teardown delete an untagged resource.

Where a service's list call does not return tags (IAM, S3, SNS, CloudWatch, EMR), the
candidates are narrowed by labkit's naming convention (``labkit-<session>-...``; EMR:
every live cluster) and each candidate's tags are read before it counts.

The Resource Groups Tagging API is asked too, one paginated call per region. It misses
whole kinds (IAM, key pairs, Elastic IPs, network interfaces, EMR clusters in some
endpoints) and it keeps answering with resources deleted minutes ago, so it never
decides for a kind labkit knows. It is the safety net for the kinds labkit does not
know: whatever it reports under a service and type that none of the finders covers
comes back as kind ``other``, so a tagged resource nobody expected is at least shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar


from labkit.aws import ec2 as ec2_mod
from labkit.aws import emr as emr_mod
from labkit.aws.errors import aws_call
from labkit.aws.iam import IAM_REGION
from labkit.aws.s3 import bucket_session
from labkit.aws.session import TAG_SEAT, TAG_SESSION, Aws, tag_dict
from labkit.errors import AwsError, CredentialsError, NotFoundError
from labkit.regions import KNOWN_REGIONS

log = logging.getLogger(__name__)

GLOBAL = "global"  # the region of IAM resources
EMR_NODE_TAG = "aws:elasticmapreduce:job-flow-id"  # EMR copies cluster tags to its nodes
# Every public IPv4 address is billed by the hour since 2024-02 (aws.amazon.com/vpc/pricing).
PUBLIC_IPV4_USD_HOUR = 0.005

# Kinds in the order teardown deletes them; the label is what the instructor reads.
KINDS: dict[str, tuple[str, str]] = {
    "emr-cluster": ("EMR cluster", "EMR clusters"),
    "instance": ("machine", "machines"),
    "volume": ("detached disk", "detached disks"),
    "elastic-ip": ("Elastic IP", "Elastic IPs"),
    "network-interface": ("network interface", "network interfaces"),
    "security-group": ("security group", "security groups"),
    "key-pair": ("key pair", "key pairs"),
    "alarm": ("CloudWatch alarm", "CloudWatch alarms"),
    "sns-topic": ("notification topic", "notification topics"),
    "iam-instance-profile": ("IAM instance profile", "IAM instance profiles"),
    "iam-role": ("IAM role", "IAM roles"),
    "iam-user": ("IAM user", "IAM users"),
    "iam-policy": ("IAM policy", "IAM policies"),
    "s3-bucket": ("S3 bucket", "S3 buckets"),
    "other": ("other tagged resource", "other tagged resources"),
}
EC2_KINDS = frozenset({"instance", "volume", "elastic-ip", "network-interface",
                       "security-group", "key-pair"})
REGIONAL_KINDS = EC2_KINDS | {"emr-cluster", "alarm", "sns-topic", "other"}
IAM_KINDS = frozenset({"iam-instance-profile", "iam-role", "iam-user", "iam-policy"})
ALL_KINDS = frozenset(KINDS)

# Tagging-API (service, resource type) pairs that a finder above already covers, or that
# go away with something it covers (rules with their group). "*": the whole service.
_COVERED = {("ec2", "instance"), ("ec2", "volume"), ("ec2", "elastic-ip"),
            ("ec2", "network-interface"), ("ec2", "security-group"),
            ("ec2", "security-group-rule"), ("ec2", "key-pair"),
            ("elasticmapreduce", "cluster"), ("cloudwatch", "alarm"),
            ("sns", "*"), ("s3", "*"), ("iam", "*")}


def label(kind: str, n: int) -> str:
    one, many = KINDS.get(kind, (kind, kind + "s"))
    return f"{n} {one if n == 1 else many}"


@dataclass(frozen=True)
class Found:
    """One tagged resource: what it is, where, whose, how old, what it costs per hour."""

    kind: str
    region: str
    id: str
    name: str
    session: str
    age_hours: float | None
    hourly_usd: float | None
    detail: str = ""


@dataclass(frozen=True)
class Item:
    """A found resource with the API's own record of it, which deleting needs."""

    found: Found
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Scan:
    items: list[Item] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # places that could not be read
    regions: list[str] = field(default_factory=list)

    @property
    def found(self) -> list[Found]:
        return [i.found for i in self.items]


# -- who owns a resource ----------------------------------------------------------------

def owner(tags: dict[str, str], session: str | None) -> str | None:
    """The session a resource belongs to, if it is one we are looking for.

    ``session=None`` means any labkit session (the key is present, whatever its value).
    """
    value = tags.get(TAG_SESSION)
    if value is None or (session is not None and value != session):
        return None
    return value


def name_prefix(session: str | None) -> str:
    """Names of IAM resources, buckets, alarms and topics start with this."""
    return "labkit-" if session is None else f"labkit-{session}-"


def _named_like(name: str, session: str | None) -> bool:
    return name.startswith(name_prefix(session)) or (
        session is not None and name == f"labkit-{session}")


def _ec2_filter(session: str | None) -> list[dict[str, Any]]:
    if session is None:
        return [{"Name": "tag-key", "Values": [TAG_SESSION]}]
    return [{"Name": f"tag:{TAG_SESSION}", "Values": [session]}]


def _age(when: object) -> float | None:
    if not isinstance(when, datetime):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds: float = (datetime.now(UTC) - when).total_seconds()
    return max(0.0, seconds / 3600)


# -- prices -------------------------------------------------------------------------------

class Prices:
    """Hourly prices from ``labkit.pricing`` when it is there; None (unknown) otherwise."""

    def __init__(self) -> None:
        self._book: Any = None
        try:
            from labkit.pricing import PriceBook

            self._book = PriceBook.shipped()
        except Exception as e:  # noqa: BLE001 - a price must never stop a teardown
            log.info("no price table: %s", e)

    @staticmethod
    def _usd(price: Any) -> float | None:
        if price is None:
            return None
        return float(getattr(price, "usd_per_hour", price))

    def _ask(self, method: str, *args: Any) -> float | None:
        fn = getattr(self._book, method, None)
        if fn is None:
            return None
        try:
            return self._usd(fn(*args))
        except Exception:  # noqa: BLE001
            return None

    def ec2(self, region: str, instance_type: str) -> float | None:
        return self._ask("ec2", region, instance_type)

    def emr(self, region: str, instance_type: str) -> float | None:
        """One EMR node: EC2 price plus the EMR fee."""
        return self._ask("emr", region, instance_type)

    def disk(self, region: str, gb: int) -> float | None:
        return self._ask("disk", region, gb)


# -- clients shared by threads ------------------------------------------------------------

def shared(aws: Aws | str | None) -> Aws:
    """An ``Aws`` for a profile name (None: the default chain), or as is."""
    return aws if isinstance(aws, Aws) else Aws(aws)


# -- parallel helpers ---------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


def parallel(fn: Callable[[T], R], items: Sequence[T], *, workers: int = 16
             ) -> list[R | BaseException]:
    """fn over items in threads; each result or the exception it raised, in order."""
    def safe(item: T) -> R | BaseException:
        try:
            return fn(item)
        except Exception as e:  # noqa: BLE001 - returned, the caller decides
            return e

    if len(items) <= 1:
        return [safe(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(safe, items))


def _map_ok(fn: Callable[[T], R], items: Sequence[T], *, workers: int = 8) -> list[R]:
    """Like ``parallel`` but the first failure is raised (reads that must all succeed)."""
    out: list[R] = []
    for r in parallel(fn, items, workers=workers):
        if isinstance(r, BaseException):
            raise r
        out.append(r)
    return out


# -- regions ------------------------------------------------------------------------------

def enabled_regions(aws: Aws) -> tuple[list[str], bool]:
    """The account's enabled regions and whether AWS said so (True), or labkit's list of
    known regions to probe (False) when DescribeRegions is not allowed."""
    home = aws.session().region_name or "us-east-1"
    try:
        with aws_call("ec2", "listing the account's regions", region=home):
            answer = aws.client("ec2", home).describe_regions(AllRegions=False)["Regions"]
    except CredentialsError:
        raise
    except AwsError as e:
        log.info("describe_regions failed (%s); probing the known regions", e)
        return list(KNOWN_REGIONS), False
    partition = _partition(aws, home)
    names = [r["RegionName"] for r in answer
             # AllRegions=False already leaves out regions not opted in; some endpoints
             # (emulators) list them anyway, marked, so the status is checked as well.
             if r.get("OptInStatus", "opt-in-not-required") != "not-opted-in"
             and _partition(aws, r["RegionName"]) == partition]
    return sorted(names), True


def _partition(aws: Aws, region: str) -> str:
    try:
        return str(aws.session().get_partition_for_region(region))
    except Exception:  # noqa: BLE001 - an unknown region is in the caller's partition
        return "aws"


# -- EC2 ------------------------------------------------------------------------------------

def _describe(aws: Aws, region: str, op: str, key: str, doing: str,
              filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    client = aws.client("ec2", region)
    with aws_call("ec2", doing, region=region):
        if client.can_paginate(op):
            pages = client.get_paginator(op).paginate(Filters=filters)
            return [x for page in pages for x in page.get(key, [])]
        return list(getattr(client, op)(Filters=filters).get(key, []))


def find_ec2(aws: Aws, region: str, session: str | None, kinds: Iterable[str],
             prices: Prices | None = None) -> list[Item]:
    """Instances (not yet terminated), detached disks, Elastic IPs, network interfaces
    not held by one of the session's machines, security groups and key pairs."""
    kinds = set(kinds) & EC2_KINDS
    flt = _ec2_filter(session)
    out: list[Item] = []
    instances: list[dict[str, Any]] = []
    if kinds & {"instance", "volume", "network-interface"}:
        instances = [
            inst for res in _describe(
                aws, region, "describe_instances", "Reservations", "listing machines",
                flt + [{"Name": "instance-state-name", "Values": list(ec2_mod.LIVE_STATES)}])
            for inst in res.get("Instances", []) if owner(tag_dict(inst.get("Tags")), session)]
    mine = {i["InstanceId"] for i in instances}
    volumes: list[dict[str, Any]] = []
    if kinds & {"instance", "volume"}:
        volumes = [v for v in _describe(aws, region, "describe_volumes", "Volumes",
                                        "listing disks", flt)
                   if owner(tag_dict(v.get("Tags")), session)]
    if "instance" in kinds:
        disks: dict[str, list[dict[str, Any]]] = {}
        for v in volumes:
            for a in v.get("Attachments", []):
                disks.setdefault(a.get("InstanceId", ""), []).append(v)
        for inst in instances:
            out.append(_instance(region, inst, disks.get(inst["InstanceId"], []), session,
                                 prices))
    if "volume" in kinds:
        for v in volumes:
            holders = [a.get("InstanceId", "") for a in v.get("Attachments", [])]
            if any(h in mine for h in holders) and v.get("State") != "available":
                continue  # goes with its machine
            tags = tag_dict(v.get("Tags"))
            size = int(v.get("Size", 0))
            detail = f"{size} GB {v.get('VolumeType', '')}, {v.get('State', '')}"
            if holders:
                detail += f", attached to {', '.join(holders)}"
            out.append(Item(Found("volume", region, v["VolumeId"], tags.get(TAG_SEAT, ""),
                                  tags[TAG_SESSION], _age(v.get("CreateTime")),
                                  prices.disk(region, size) if prices else None, detail), v))
    if "elastic-ip" in kinds:
        for a in _describe(aws, region, "describe_addresses", "Addresses",
                           "listing Elastic IPs", flt):
            tags = tag_dict(a.get("Tags"))
            if not owner(tags, session):
                continue
            holder = a.get("InstanceId") or a.get("NetworkInterfaceId") or ""
            out.append(Item(Found(
                "elastic-ip", region, a.get("AllocationId", a.get("PublicIp", "")),
                a.get("PublicIp", ""), tags[TAG_SESSION], None, PUBLIC_IPV4_USD_HOUR,
                f"associated with {holder}" if holder else "not associated"), a))
    if "network-interface" in kinds:
        for n in _describe(aws, region, "describe_network_interfaces", "NetworkInterfaces",
                           "listing network interfaces", flt):
            tags = tag_dict(n.get("TagSet") or n.get("Tags"))
            if not owner(tags, session):
                continue
            att = n.get("Attachment") or {}
            if n.get("Status") != "available" and att.get("InstanceId") in mine:
                continue  # goes with its machine
            out.append(Item(Found(
                "network-interface", region, n["NetworkInterfaceId"], tags.get(TAG_SEAT, ""),
                tags[TAG_SESSION], None, None,
                f"{n.get('Status', '')}"
                + (f", attached to {att['InstanceId']}" if att.get("InstanceId") else "")), n))
    if "security-group" in kinds:
        for g in _describe(aws, region, "describe_security_groups", "SecurityGroups",
                           "listing security groups", flt):
            tags = tag_dict(g.get("Tags"))
            if owner(tags, session) and g.get("GroupName") != "default":
                out.append(Item(Found("security-group", region, g["GroupId"],
                                      g.get("GroupName", ""), tags[TAG_SESSION], None, None,
                                      f"in {g.get('VpcId', '')}"), g))
    if "key-pair" in kinds:
        for k in _describe(aws, region, "describe_key_pairs", "KeyPairs",
                           "listing key pairs", flt):
            tags = tag_dict(k.get("Tags"))
            if owner(tags, session):
                out.append(Item(Found("key-pair", region, k["KeyName"], k["KeyName"],
                                      tags[TAG_SESSION], _age(k.get("CreateTime")), 0.0,
                                      k.get("KeyPairId", "")), k))
    return out


def _instance(region: str, inst: dict[str, Any], disks: list[dict[str, Any]],
              session: str | None, prices: Prices | None) -> Item:
    tags = tag_dict(inst.get("Tags"))
    state = inst.get("State", {}).get("Name", "")
    itype = inst.get("InstanceType", "")
    cluster = tags.get(EMR_NODE_TAG, "")
    # LaunchTime moves on every start; the root disk remembers when the machine was made.
    times: list[datetime] = [t for t in [inst.get("LaunchTime")] + [
        d.get("CreateTime") for d in disks] if isinstance(t, datetime)]
    born = min(times, default=None)
    hourly: float | None = None
    if prices is not None:
        gb = sum(int(d.get("Size", 0)) for d in disks)
        disk = prices.disk(region, gb) if gb else 0.0
        if cluster:
            compute: float | None = 0.0  # priced with its cluster
        elif state in ("running", "pending"):
            compute = prices.ec2(region, itype)
        else:
            compute = 0.0  # a stopped machine pays for its disk only
        hourly = None if compute is None or disk is None else compute + disk
    detail = f"{itype} {state}"
    if cluster:
        detail += f", EMR node of {cluster}"
    name = tags.get(TAG_SEAT) or tags.get("Name", "")
    return Item(Found("instance", region, inst["InstanceId"], name, tags[TAG_SESSION],
                      _age(born), hourly, detail), inst)


# -- EMR, CloudWatch, SNS, the tagging API ------------------------------------------------

def find_clusters(aws: Aws, region: str, session: str | None,
                  prices: Prices | None = None) -> list[Item]:
    """Clusters not yet terminated. EMR's list call has no tags, so every live cluster is
    described (in parallel); the session's are kept."""
    emr = aws.client("emr", region)
    with aws_call("emr", "listing clusters", region=region):
        pages = emr.get_paginator("list_clusters").paginate(
            ClusterStates=list(emr_mod.ALL_BUT_GONE))
        # The ARN says where a cluster lives. moto's server files every cluster under
        # us-east-1 and lists it in every region: without this check, one cluster
        # would be counted (and priced) once per region.
        listed = [c for page in pages for c in page.get("Clusters", [])
                  if c.get("ClusterArn", "").split(":")[3:4] in ([region], [])]

    def one(c: dict[str, Any]) -> Item | None:
        client = aws.client("emr", region)
        with aws_call("emr", f"reading cluster {c['Id']}", region=region):
            desc = client.describe_cluster(ClusterId=c["Id"])["Cluster"]
        tags = tag_dict(desc.get("Tags"))
        if not owner(tags, session):
            return None
        state = desc.get("Status", {}).get("State", "")
        hourly: float | None = None
        nodes = ""
        if prices is not None:
            hourly, nodes = _cluster_price(aws, region, c["Id"], prices)
        return Item(Found("emr-cluster", region, c["Id"], c.get("Name", ""),
                          tags[TAG_SESSION],
                          _age(desc.get("Status", {}).get("Timeline", {})
                               .get("CreationDateTime")),
                          hourly, f"{state}{', ' + nodes if nodes else ''}"), desc)

    return [i for i in _map_ok(_tolerant(one), listed) if i is not None]


def _tolerant(fn: Callable[[T], R | None]) -> Callable[[T], R | None]:
    def wrapped(x: T) -> R | None:
        try:
            return fn(x)
        except NotFoundError:
            return None
    return wrapped


def _cluster_price(aws: Aws, region: str, cluster_id: str, prices: Prices
                   ) -> tuple[float | None, str]:
    """(USD/hour of the cluster's nodes, "3 × m5.xlarge")."""
    with aws_call("emr", f"reading the nodes of cluster {cluster_id}", region=region):
        groups = aws.client("emr", region).list_instance_groups(
            ClusterId=cluster_id).get("InstanceGroups", [])
    total: float | None = 0.0
    counts: dict[str, int] = {}
    for g in groups:
        n = int(g.get("RunningInstanceCount", g.get("RequestedInstanceCount", 0)) or 0)
        itype = g.get("InstanceType", "")
        counts[itype] = counts.get(itype, 0) + n
        unit = prices.emr(region, itype)
        total = None if total is None or unit is None else total + unit * n
    return total, ", ".join(f"{n} × {t}" for t, n in counts.items())


def find_alarms(aws: Aws, region: str, session: str | None) -> list[Item]:
    cw = aws.client("cloudwatch", region)
    with aws_call("cloudwatch", "listing alarms", region=region):
        pages = cw.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=name_prefix(session), AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        alarms = [a for page in pages
                  for a in page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])]

    def one(a: dict[str, Any]) -> Item | None:
        with aws_call("cloudwatch", f"reading the tags of alarm {a['AlarmName']}",
                      region=region):
            tags = tag_dict(aws.client("cloudwatch", region).list_tags_for_resource(
                ResourceARN=a["AlarmArn"]).get("Tags"))
        if not owner(tags, session):
            return None
        return Item(Found("alarm", region, a["AlarmName"], a["AlarmName"], tags[TAG_SESSION],
                          None, 0.0, a.get("StateValue", "")), a)

    return [i for i in _map_ok(_tolerant(one), alarms) if i is not None]


def find_topics(aws: Aws, region: str, session: str | None) -> list[Item]:
    sns = aws.client("sns", region)
    with aws_call("sns", "listing notification topics", region=region):
        arns = [t["TopicArn"] for page in sns.get_paginator("list_topics").paginate()
                for t in page.get("Topics", [])]
    candidates = [a for a in arns if _named_like(a.rsplit(":", 1)[-1], session)]

    def one(arn: str) -> Item | None:
        with aws_call("sns", f"reading the tags of topic {arn}", region=region):
            tags = tag_dict(aws.client("sns", region).list_tags_for_resource(
                ResourceArn=arn).get("Tags"))
        if not owner(tags, session):
            return None
        return Item(Found("sns-topic", region, arn, arn.rsplit(":", 1)[-1], tags[TAG_SESSION],
                          None, 0.0), {"TopicArn": arn})

    return [i for i in _map_ok(_tolerant(one), candidates) if i is not None]


def _arn_kind(arn: str) -> tuple[str, str]:
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return "", ""
    resource = parts[5]
    rtype = resource.split("/", 1)[0] if "/" in resource else resource.split(":", 1)[0]
    return parts[2], rtype


def find_others(aws: Aws, region: str, session: str | None) -> list[Item]:
    """Tagged resources of kinds no finder covers, as the tagging API reports them."""
    flt = [{"Key": TAG_SESSION}] if session is None else [
        {"Key": TAG_SESSION, "Values": [session]}]
    client = aws.client("resourcegroupstaggingapi", region)
    try:
        with aws_call("tagging", "listing tagged resources", region=region):
            pages = client.get_paginator("get_resources").paginate(TagFilters=flt)
            mappings = [m for page in pages for m in page.get("ResourceTagMappingList", [])]
    except AwsError as e:  # only a safety net: its absence must not stop anything
        log.info("tagging API in %s: %s", region, e)
        return []
    out: list[Item] = []
    for m in mappings:
        service, rtype = _arn_kind(m.get("ResourceARN", ""))
        if (service, "*") in _COVERED or (service, rtype) in _COVERED or not service:
            continue
        tags = tag_dict(m.get("Tags"))
        if owner(tags, session):
            out.append(Item(Found("other", region, m["ResourceARN"], f"{service}:{rtype}",
                                  tags[TAG_SESSION], None, None,
                                  "labkit does not delete this kind"), m))
    return out


# -- IAM ------------------------------------------------------------------------------------

def find_iam(aws: Aws, session: str | None, kinds: Iterable[str]) -> list[Item]:
    """IAM's list calls return no tags: candidates by name, then each one's tags."""
    iam = aws.client("iam", IAM_REGION)
    kinds = set(kinds) & IAM_KINDS
    out: list[Item] = []
    specs = [
        ("iam-instance-profile", "list_instance_profiles", "InstanceProfiles",
         "InstanceProfileName", "get_instance_profile", "InstanceProfile", {}),
        ("iam-role", "list_roles", "Roles", "RoleName", "get_role", "Role", {}),
        ("iam-user", "list_users", "Users", "UserName", "get_user", "User", {}),
        ("iam-policy", "list_policies", "Policies", "PolicyName", "get_policy", "Policy",
         {"Scope": "Local"}),
    ]
    for kind, op, key, name_key, get_op, get_key, args in specs:
        if kind not in kinds:
            continue
        with aws_call("iam", f"listing {KINDS[kind][1]}"):
            listed = [x for page in iam.get_paginator(op).paginate(**args)
                      for x in page.get(key, [])]
        candidates = [x for x in listed if _named_like(x[name_key], session)]

        def one(x: dict[str, Any], kind: str = kind, name_key: str = name_key,
                get_op: str = get_op, get_key: str = get_key) -> Item | None:
            ident = ({"PolicyArn": x["Arn"]} if kind == "iam-policy"
                     else {name_key: x[name_key]})
            with aws_call("iam", f"reading {KINDS[kind][0]} {x[name_key]}"):
                full = getattr(aws.client("iam", IAM_REGION), get_op)(**ident)[get_key]
            tags = tag_dict(full.get("Tags"))
            if not owner(tags, session):
                return None
            return Item(Found(kind, GLOBAL, x["Arn"] if kind == "iam-policy" else x[name_key],
                              x[name_key], tags[TAG_SESSION], _age(x.get("CreateDate")), 0.0,
                              tags.get(TAG_SEAT, "")), full)

        out += [i for i in _map_ok(_tolerant(one), candidates) if i is not None]
    return out


# -- S3 -------------------------------------------------------------------------------------

def bucket_region(aws: Aws, bucket: dict[str, Any]) -> str:
    if bucket.get("BucketRegion"):
        return str(bucket["BucketRegion"])
    with aws_call("s3", f"locating bucket {bucket['Name']}"):
        where = aws.client("s3", "us-east-1").get_bucket_location(
            Bucket=bucket["Name"]).get("LocationConstraint")
    return str({None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(where, where))


def find_buckets(aws: Aws, session: str | None) -> list[Item]:
    """Buckets named ``labkit-<session>-...`` whose own tags carry the session."""
    with aws_call("s3", "listing buckets"):
        listed = aws.client("s3", "us-east-1").list_buckets().get("Buckets", [])
    candidates = [b for b in listed if _named_like(b["Name"], session)]

    def one(b: dict[str, Any]) -> Item | None:
        region = bucket_region(aws, b)
        value = bucket_session(aws, region, b["Name"])
        if value is None or owner({TAG_SESSION: value}, session) is None:
            return None
        return Item(Found("s3-bucket", region, b["Name"], b["Name"], value,
                          _age(b.get("CreationDate")), None), {**b, "Region": region})

    return [i for i in _map_ok(_tolerant(one), candidates) if i is not None]


# -- everything -------------------------------------------------------------------------

def find_in_region(aws: Aws, region: str, session: str | None, kinds: Iterable[str],
                   prices: Prices | None = None) -> list[Item]:
    kinds = set(kinds)
    out: list[Item] = []
    if "emr-cluster" in kinds:
        out += find_clusters(aws, region, session, prices)
    if kinds & EC2_KINDS:
        out += find_ec2(aws, region, session, kinds, prices)
    if "alarm" in kinds:
        out += find_alarms(aws, region, session)
    if "sns-topic" in kinds:
        out += find_topics(aws, region, session)
    if "other" in kinds:
        out += find_others(aws, region, session)
    return out


def scan(aws: Aws, session: str | None, *, regions: Sequence[str] | None = None,
         confirmed: bool = True, kinds: Iterable[str] = ALL_KINDS,
         prices: Prices | None = None) -> Scan:
    """Everything of the session (or of every session, with None), all regions at once.

    ``confirmed=False``: the regions are a guess (DescribeRegions was refused), so a
    region that refuses us as not enabled is left out quietly instead of reported.
    """
    kinds = set(kinds)
    aws = shared(aws)
    if regions is None:
        regions, confirmed = enabled_regions(aws)
    tasks: list[tuple[str, str]] = []
    if kinds & REGIONAL_KINDS:
        tasks += [("region", r) for r in regions]
    if kinds & IAM_KINDS:
        tasks.append(("iam", GLOBAL))
    if "s3-bucket" in kinds:
        tasks.append(("s3", GLOBAL))

    def run(task: tuple[str, str]) -> list[Item]:
        what, where = task
        if what == "iam":
            return find_iam(aws, session, kinds)
        if what == "s3":
            return find_buckets(aws, session)
        return find_in_region(aws, where, session, kinds, prices)

    started = time.monotonic()
    result = Scan(regions=list(regions))
    for (what, where), r in zip(tasks, parallel(run, tasks, workers=24)):
        if isinstance(r, BaseException):
            if not confirmed and what == "region" and isinstance(r, CredentialsError):
                result.regions.remove(where)  # not enabled for this account
                continue
            place = where if what == "region" else what.upper()
            result.errors.append(f"{place}: {r}" if not isinstance(r, AwsError)
                                 else str(r).splitlines()[0])
            continue
        result.items += r
    log.info("scan of %d regions took %.1fs", len(regions), time.monotonic() - started)
    result.items.sort(key=lambda i: (list(KINDS).index(i.found.kind), i.found.region,
                                     i.found.name, i.found.id))
    return result
