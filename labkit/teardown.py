"""Find by tag, delete in dependency order, sweep again.

Nothing here reads ``state.json``: everything is found again by its ``labkit:session``
tag, in every enabled region, so teardown also cleans up after a provision that stopped
half-way or a session folder that was lost.

Each step lists its kind afresh, right before deleting, and deletes only what that
listing shows with the session's tag (``labkit.aws.inventory`` checks the tags AWS
returned, never just the filter it was asked). A security group named ``labkit-<session>``
without the tag, a bucket with the session's name but not its tag, the default VPC and
everything of another session are never touched.

Order: EMR clusters and machines are terminated together and waited for (bounded);
then, per region, detached disks, Elastic IPs, network interfaces, security groups
(retried while AWS still sees them in use), key pairs, alarms and topics; then IAM
(instance profiles, roles, users, policies) and the S3 bucket. A final sweep lists what
is left; an empty list is success.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from labkit.aws import emr as emr_mod
from labkit.aws.errors import aws_call
from labkit.aws.iam import IAM_REGION
from labkit.aws.inventory import (
    GLOBAL,
    KINDS,
    Found,
    Item,
    Prices,
    Scan,
    enabled_regions,
    find_buckets,
    find_clusters,
    find_ec2,
    find_iam,
    find_in_region,
    label,
    owner,
    parallel,
    scan,
)
from labkit.aws.session import Aws, tag_dict
from labkit.errors import AwsError, NotFoundError

__all__ = ["Found", "inventory", "print_inventory", "sweep_all", "teardown"]

T = TypeVar("T")

# Bounds on every wait, in seconds. AWS terminates a machine in 1-2 minutes and an EMR
# cluster in 2-10; a security group stays "in use" until the network interfaces of its
# machines are gone, usually within a minute of termination.
INSTANCE_WAIT_S = 15 * 60.0
CLUSTER_WAIT_S = 20 * 60.0
IN_USE_RETRY_S = 5 * 60.0
POLL_S = 5.0

TERMINATION_BATCH = 1000  # TerminateInstances takes up to 1000 ids
DELETE_OBJECTS_BATCH = 1000  # DeleteObjects takes up to 1000 keys


def retry(call: Callable[[], T], *, codes: Iterable[str], seconds: float,
          first_delay: float = 2.0, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> T:
    """``call()`` again, with backoff, while it fails with one of ``codes`` (an AWS error
    code such as DependencyViolation), for at most ``seconds``; then the error stands."""
    codes = set(codes)
    deadline = clock() + seconds
    delay = first_delay
    while True:
        try:
            return call()
        except AwsError as e:
            if e.code not in codes or clock() + delay > deadline:
                raise
            sleep(delay)
            delay = min(delay * 2, 30.0)


# -- what the instructor reads ---------------------------------------------------------------

def _hours(h: float | None) -> str:
    if h is None:
        return "-"
    if h < 1:
        return f"{h * 60:.0f} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:.0f} d"


def _usd(x: float | None) -> str:
    return "?" if x is None else f"${x:,.3f}"


def _in_regions(regions: Iterable[str]) -> str:
    regions = {r for r in regions if r != GLOBAL}
    if not regions:
        return ""
    return f" in {len(regions)} region{'s' if len(regions) != 1 else ''}"


PRICED = {"instance", "emr-cluster", "volume"}  # kinds whose unknown price matters


def _total(found: Sequence[Found]) -> tuple[float, int]:
    """(known USD/hour, how many resources have an unknown price)."""
    known = sum(f.hourly_usd for f in found if f.hourly_usd is not None)
    unknown = sum(1 for f in found if f.hourly_usd is None and f.kind in PRICED)
    return known, unknown


def _cost_line(found: Sequence[Found]) -> str:
    usd, unknown = _total(found)
    text = f"about ${usd:,.2f}/hour"
    if unknown:
        text += f" (at least: {unknown} without a known price)"
    return text


FULL_LIST_MAX = 60  # longer listings are grouped by kind and region


def print_inventory(console: Console, session: str, found: list[Found]) -> None:
    """What carries the session's tag: every resource, or (for a big class) one row per
    kind and region with a few names."""
    if not found:
        console.print(f"nothing tagged labkit:session={session} in any region", markup=False)
        return
    table = Table(title=f"session {session}: {len(found)} tagged resources", title_justify="left")
    if len(found) <= FULL_LIST_MAX:
        table.add_column("kind", min_width=8, overflow="fold")
        table.add_column("region", min_width=9, no_wrap=True)
        # Ids never break (they are copied into other commands); the detail gives way.
        table.add_column("name / id", min_width=12, no_wrap=True)
        table.add_column("age", min_width=5, no_wrap=True)
        table.add_column("$/hour", min_width=6, no_wrap=True)
        table.add_column("detail", overflow="ellipsis", ratio=1)
        for f in found:
            # An id that only repeats the name (IAM names, ARNs ending in it) is left out.
            shown = "" if f.id == f.name or (f.id.startswith("arn:") and f.id.endswith(
                f.name)) else f.id
            what = "\n".join(x for x in (f.name, shown) if x)
            table.add_row(f.kind, f.region, what, _hours(f.age_hours),
                          _usd(f.hourly_usd) if f.hourly_usd or f.kind in PRICED else "",
                          f.detail)
    else:
        for col, width in (("kind", 8), ("region", 9), ("count", 5), ("oldest", 6),
                           ("$/hour", 6), ("for example", 10)):
            table.add_column(col, min_width=width, overflow="fold")
        groups: dict[tuple[str, str], list[Found]] = defaultdict(list)
        for f in found:
            groups[(f.kind, f.region)].append(f)
        for (kind, region), items in groups.items():
            ages = [f.age_hours for f in items if f.age_hours is not None]
            usd, unknown = _total(items)
            names = [f.name or f.id for f in items]
            table.add_row(kind, region, str(len(items)), _hours(max(ages) if ages else None),
                          (f"${usd:,.2f}" + ("+" if unknown else "")) if usd or unknown else "",
                          ", ".join(names[:3]) + (", ..." if len(names) > 3 else ""))
    console.print(table)
    counts: dict[str, int] = defaultdict(int)
    for f in found:
        counts[f.kind] += 1
    summary = ", ".join(label(k, n) for k, n in counts.items())
    console.print(f"{summary}; {_cost_line(found)}", markup=False)


# -- finding -----------------------------------------------------------------------------

def inventory(session: str, *, profile: str | None) -> list[Found]:
    """Every resource tagged ``labkit:session=<session>``, in every enabled region.

    Raises ``AwsError`` if some region or service could not be read: a partial list
    must never pass for a complete one.
    """
    result = scan(Aws(profile), session, prices=Prices())
    _raise_unread(result)
    return result.found


def _raise_unread(result: Scan) -> None:
    if result.errors:
        shown = "; ".join(result.errors[:3]) + (" ..." if len(result.errors) > 3 else "")
        raise AwsError(f"could not read {len(result.errors)} place(s): {shown}",
                       hint="check the network and your permissions, then run again")


def sweep_all(*, profile: str | None, console: Console) -> list[Found]:
    """Every labkit session's resources in every region, one row per session with its
    age and hourly cost, so a class that was forgotten is found."""
    result = scan(Aws(profile), None, prices=Prices())
    found = result.found
    if not found:
        console.print(f"no labkit resources in {len(result.regions)} regions")
    else:
        by_session: dict[str, list[Found]] = defaultdict(list)
        for f in found:
            by_session[f.session].append(f)
        table = Table(title=f"labkit sessions in {len(result.regions)} regions",
                      title_justify="left")
        for col in ("session", "regions", "what", "oldest", "$/hour"):
            table.add_column(col)
        for session in sorted(by_session, key=lambda s: -_total(by_session[s])[0]):
            items = by_session[session]
            counts: dict[str, int] = defaultdict(int)
            for f in items:
                counts[f.kind] += 1
            ages = [f.age_hours for f in items if f.age_hours is not None]
            usd, unknown = _total(items)
            table.add_row(session, ", ".join(sorted({f.region for f in items} - {GLOBAL}))
                          or GLOBAL, ", ".join(label(k, n) for k, n in counts.items()),
                          _hours(max(ages) if ages else None),
                          f"${usd:,.2f}" + ("+" if unknown else ""))
        console.print(table)
        console.print(f"total {_cost_line(found)} across {len(by_session)} session(s); "
                      "delete one with `labkit teardown --session NAME --yes`", markup=False)
    for e in result.errors:
        console.print(f"could not read {e}", markup=False)
    _raise_unread(result)
    return found


# -- deleting ------------------------------------------------------------------------------

class _Run:
    """One teardown: who is deleting, what got deleted where, what failed."""

    def __init__(self, aws: Aws, session: str, console: Console) -> None:
        self.aws = aws
        self.session = session
        self.console = console
        self._lock = threading.Lock()
        self.done: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.failures: list[str] = []

    def ok(self, kind: str, region: str, n: int = 1) -> None:
        with self._lock:
            self.done[kind][region] += n

    def failed(self, what: str, region: str, e: BaseException) -> None:
        where = f" in {region}" if region and region != GLOBAL else ""
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        self.note(f"could not delete {what}{where}: {text}")

    def note(self, line: str) -> None:
        with self._lock:
            self.failures.append(line)

    def each(self, kind: str, items: Sequence[Item], delete: Callable[[Item], None],
             workers: int = 8) -> None:
        """``delete`` every item (in parallel); one resource failing stops no other."""
        def one(item: Item) -> None:
            f = item.found
            try:
                delete(item)
            except NotFoundError:
                pass  # gone already (a teardown running twice, or AWS faster than us)
            except Exception as e:  # noqa: BLE001 - reported, the rest goes on
                self.failed(f"{KINDS[kind][0]} {f.name or f.id}", f.region, e)
                return
            self.ok(kind, f.region)

        parallel(one, items, workers=workers)

    def report(self, kinds: Iterable[str], verb: str = "deleted") -> None:
        for kind in kinds:
            by_region = self.done.get(kind)
            if by_region:
                n = sum(by_region.values())
                self.console.print(f"{verb} {label(kind, n)}{_in_regions(by_region)}",
                                   markup=False)

    def regions(self, fn: Callable[[str], None], regions: Sequence[str]) -> None:
        for region, r in zip(regions, parallel(fn, regions, workers=32)):
            if isinstance(r, BaseException):
                self.failed("resources", region, r)


def _terminate_compute(run: _Run, region: str) -> None:
    """Terminate the region's clusters and machines, then wait (bounded) until both are
    gone, so that nothing below is still in use."""
    aws, session = run.aws, run.session
    clusters = find_clusters(aws, region, session)
    cluster_ids = [i.found.id for i in clusters]
    running = [i.found.id for i in clusters
               if i.raw.get("Status", {}).get("State") != "TERMINATING"]
    if running:
        try:
            emr_mod.terminate(aws, region, running)
        except AwsError as e:
            run.failed(label("emr-cluster", len(running)), region, e)
    # EMR's own nodes carry the session's tag too (EMR copies cluster tags to them);
    # terminating them here as well costs nothing and spares a wait on a stuck cluster.
    machines = find_ec2(aws, region, session, {"instance"})
    ids = [i.found.id for i in machines]
    _terminate_instances(run, region, ids)
    _wait_instances(run, region, ids)
    _wait_clusters(run, region, cluster_ids)


def _terminate_instances(run: _Run, region: str, ids: Sequence[str]) -> None:
    client = run.aws.client("ec2", region)
    for start in range(0, len(ids), TERMINATION_BATCH):
        batch = list(ids[start:start + TERMINATION_BATCH])
        try:
            with aws_call("ec2", "terminating machines", region=region):
                client.terminate_instances(InstanceIds=batch)
        except AwsError:
            # One protected or vanished machine fails the whole call: go one by one so
            # that it stops only itself.
            for iid in batch:
                try:
                    with aws_call("ec2", f"terminating machine {iid}", region=region):
                        client.terminate_instances(InstanceIds=[iid])
                except NotFoundError:
                    pass
                except AwsError as e:
                    run.failed(f"machine {iid}", region, e)


def _wait_instances(run: _Run, region: str, ids: Sequence[str]) -> None:
    """Poll (one tag-filtered describe per round) until none of ``ids`` is left."""
    if not ids:
        return
    wanted = set(ids)
    deadline = time.monotonic() + INSTANCE_WAIT_S
    while True:
        left = {i.found.id for i in find_ec2(run.aws, region, run.session, {"instance"})}
        left &= wanted
        run.ok("instance", region, len(wanted) - len(left))
        wanted = left
        if not wanted:
            return
        if time.monotonic() + POLL_S > deadline:
            run.note(f"{label('instance', len(wanted))} in {region} still not "
                     f"terminated after {INSTANCE_WAIT_S / 60:.0f} minutes")
            return
        time.sleep(POLL_S)


def _wait_clusters(run: _Run, region: str, ids: Sequence[str]) -> None:
    if not ids:
        return
    wanted = set(ids)
    deadline = time.monotonic() + CLUSTER_WAIT_S
    client = run.aws.client("emr", region)
    while True:
        with aws_call("emr", "waiting for clusters to terminate", region=region):
            pages = client.get_paginator("list_clusters").paginate(
                ClusterStates=list(emr_mod.ALL_BUT_GONE))
            live = {c["Id"] for page in pages for c in page.get("Clusters", [])}
        left = wanted & live
        run.ok("emr-cluster", region, len(wanted) - len(left))
        wanted = left
        if not wanted:
            return
        if time.monotonic() + POLL_S * 3 > deadline:
            run.note(f"{label('emr-cluster', len(wanted))} in {region} still "
                     f"not terminated after {CLUSTER_WAIT_S / 60:.0f} minutes")
            return
        time.sleep(POLL_S * 3)


def _delete_network(run: _Run, region: str) -> None:
    """Disks, addresses, interfaces, groups and key pairs of one region, in that order,
    each listed afresh (with its tag checked) just before it goes."""
    aws, session = run.aws, run.session
    ec2 = aws.client("ec2", region)

    def call(doing: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        with aws_call("ec2", doing, region=region):
            return fn(**kwargs)

    def fresh(kind: str) -> list[Item]:
        return find_ec2(aws, region, session, {kind})

    def foreign(instance_ids: Iterable[str]) -> list[str]:
        """Of the machines a disk or interface hangs on, those that are neither this
        session's nor on their way out: labkit does not detach from them."""
        ids = [i for i in instance_ids if i]
        if not ids:
            return []
        try:
            with aws_call("ec2", "reading the machines a resource is attached to",
                          region=region):
                found = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
                         for i in r["Instances"]]
        except NotFoundError:
            return []
        return [i["InstanceId"] for i in found
                if i.get("State", {}).get("Name") not in ("shutting-down", "terminated")
                and owner(tag_dict(i.get("Tags")), session) is None]

    def volume(item: Item) -> None:
        others = foreign(a.get("InstanceId", "") for a in item.raw.get("Attachments", []))
        if others:
            raise AwsError(f"it is attached to {', '.join(others)}, which is not this "
                           "session's; left alone")
        # A disk of a machine that just terminated stays "in-use" for a few seconds.
        retry(lambda: call(f"deleting disk {item.found.id}", ec2.delete_volume,
                           VolumeId=item.found.id),
              codes={"VolumeInUse", "IncorrectState"}, seconds=IN_USE_RETRY_S)

    def address(item: Item) -> None:
        if item.raw.get("AssociationId"):
            call(f"detaching Elastic IP {item.found.name}", ec2.disassociate_address,
                 AssociationId=item.raw["AssociationId"])
        call(f"releasing Elastic IP {item.found.name}", ec2.release_address,
             AllocationId=item.found.id)

    def interface(item: Item) -> None:
        others = foreign([(item.raw.get("Attachment") or {}).get("InstanceId", "")])
        if others:
            raise AwsError(f"it is attached to {', '.join(others)}, which is not this "
                           "session's; left alone")
        retry(lambda: call(f"deleting network interface {item.found.id}",
                           ec2.delete_network_interface, NetworkInterfaceId=item.found.id),
              codes={"InvalidNetworkInterface.InUse", "IncorrectState"},
              seconds=IN_USE_RETRY_S)

    def group(item: Item) -> None:
        retry(lambda: call(f"deleting security group {item.found.name}",
                           ec2.delete_security_group, GroupId=item.found.id),
              codes={"DependencyViolation", "InvalidGroup.InUse"}, seconds=IN_USE_RETRY_S)

    def key_pair(item: Item) -> None:
        # By name, unique in a region: moto (5.x) ignores KeyPairId and deletes nothing.
        call(f"deleting key pair {item.found.name}", ec2.delete_key_pair,
             KeyName=item.found.name)

    for kind, delete in (("volume", volume), ("elastic-ip", address),
                         ("network-interface", interface), ("security-group", group),
                         ("key-pair", key_pair)):
        try:
            items = fresh(kind)
        except AwsError as e:
            run.failed(KINDS[kind][1], region, e)
            continue
        run.each(kind, items, delete)


def _delete_monitoring(run: _Run, region: str) -> None:
    aws = run.aws

    def alarm(item: Item) -> None:
        with aws_call("cloudwatch", f"deleting alarm {item.found.name}", region=region):
            aws.client("cloudwatch", region).delete_alarms(AlarmNames=[item.found.id])

    def topic(item: Item) -> None:
        with aws_call("sns", f"deleting topic {item.found.name}", region=region):
            aws.client("sns", region).delete_topic(TopicArn=item.found.id)

    for kind, delete in (("alarm", alarm), ("sns-topic", topic)):
        try:
            items = find_in_region(aws, region, run.session, {kind})
        except AwsError as e:
            run.failed(KINDS[kind][1], region, e)
            continue
        run.each(kind, items, delete)


def _regional(run: _Run, region: str) -> None:
    _delete_network(run, region)
    _delete_monitoring(run, region)


# -- IAM -------------------------------------------------------------------------------------

def _iam_call(run: _Run, doing: str, op: str, **kwargs: Any) -> Any:
    with aws_call("iam", doing):
        return getattr(run.aws.client("iam", IAM_REGION), op)(**kwargs)


def _iam_list(run: _Run, op: str, *keys: str, **kwargs: Any) -> list[Any]:
    """Every item under ``keys`` of every page of an IAM list call."""
    client = run.aws.client("iam", IAM_REGION)
    with aws_call("iam", f"{op.replace('_', ' ')} {next(iter(kwargs.values()), '')}"):
        pages = client.get_paginator(op).paginate(**kwargs)
        return [x for page in pages for key in keys for x in page.get(key, [])]


def _delete_iam(run: _Run) -> None:
    def profile(item: Item) -> None:
        name = item.found.id
        for role in item.raw.get("Roles", []):
            _iam_call(run, f"taking role {role['RoleName']} out of instance profile {name}",
                      "remove_role_from_instance_profile", InstanceProfileName=name,
                      RoleName=role["RoleName"])
        _iam_call(run, f"deleting instance profile {name}", "delete_instance_profile",
                  InstanceProfileName=name)

    def role(item: Item) -> None:
        name = item.found.id
        holders = _iam_list(run, "list_instance_profiles_for_role", "InstanceProfiles",
                            RoleName=name)
        if holders:  # the session's own profiles went first; these are someone else's
            raise AwsError(f"it is still in instance profile(s) "
                           f"{', '.join(p['InstanceProfileName'] for p in holders)}; "
                           "left alone")
        for policy in _iam_list(run, "list_role_policies", "PolicyNames", RoleName=name):
            _iam_call(run, f"deleting policy {policy} of role {name}", "delete_role_policy",
                      RoleName=name, PolicyName=policy)
        for policy in _iam_list(run, "list_attached_role_policies", "AttachedPolicies",
                                RoleName=name):
            _iam_call(run, f"detaching {policy['PolicyName']} from role {name}",
                      "detach_role_policy", RoleName=name, PolicyArn=policy["PolicyArn"])
        _iam_call(run, f"deleting role {name}", "delete_role", RoleName=name)

    def user(item: Item) -> None:
        name = item.found.id
        try:
            _iam_call(run, f"removing the console password of {name}",
                      "delete_login_profile", UserName=name)
        except NotFoundError:
            pass
        for key in _iam_list(run, "list_access_keys", "AccessKeyMetadata", UserName=name):
            _iam_call(run, f"deleting an access key of {name}", "delete_access_key",
                      UserName=name, AccessKeyId=key["AccessKeyId"])
        for policy in _iam_list(run, "list_user_policies", "PolicyNames", UserName=name):
            _iam_call(run, f"deleting policy {policy} of user {name}", "delete_user_policy",
                      UserName=name, PolicyName=policy)
        for policy in _iam_list(run, "list_attached_user_policies", "AttachedPolicies",
                                UserName=name):
            _iam_call(run, f"detaching {policy['PolicyName']} from user {name}",
                      "detach_user_policy", UserName=name, PolicyArn=policy["PolicyArn"])
        for grp in _iam_list(run, "list_groups_for_user", "Groups", UserName=name):
            _iam_call(run, f"taking user {name} out of group {grp['GroupName']}",
                      "remove_user_from_group", UserName=name, GroupName=grp["GroupName"])
        _iam_call(run, f"deleting user {name}", "delete_user", UserName=name)

    def policy(item: Item) -> None:
        arn = item.found.id
        holders = [e.get("UserName") or e.get("RoleName") or e.get("GroupName")
                   for e in _iam_list(run, "list_entities_for_policy", "PolicyUsers",
                                      "PolicyRoles", "PolicyGroups", PolicyArn=arn)]
        if holders:  # the session's users and roles went first; these are someone else's
            raise AwsError(f"it is still attached to {', '.join(holders)}; left alone")
        for version in _iam_list(run, "list_policy_versions", "Versions", PolicyArn=arn):
            if not version.get("IsDefaultVersion"):
                _iam_call(run, f"deleting a version of policy {item.found.name}",
                          "delete_policy_version", PolicyArn=arn,
                          VersionId=version["VersionId"])
        _iam_call(run, f"deleting policy {item.found.name}", "delete_policy", PolicyArn=arn)

    for kind, delete in (("iam-instance-profile", profile), ("iam-role", role),
                         ("iam-user", user), ("iam-policy", policy)):
        try:
            items = find_iam(run.aws, run.session, {kind})
        except AwsError as e:
            run.failed(KINDS[kind][1], GLOBAL, e)
            continue
        run.each(kind, items, delete)


# -- S3 ----------------------------------------------------------------------------------------

def _delete_buckets(run: _Run, keep_data: bool) -> None:
    if keep_data:
        return
    try:
        buckets = find_buckets(run.aws, run.session)
    except AwsError as e:
        run.failed("the S3 bucket", GLOBAL, e)
        return

    def bucket(item: Item) -> None:
        name, region = item.found.id, item.found.region
        s3 = run.aws.client("s3", region)
        versions = 0
        with aws_call("s3", f"emptying bucket {name}", region=region):
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
                objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                           for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                for start in range(0, len(objects), DELETE_OBJECTS_BATCH):
                    batch = objects[start:start + DELETE_OBJECTS_BATCH]
                    resp = s3.delete_objects(Bucket=name,
                                             Delete={"Objects": batch, "Quiet": True})
                    if resp.get("Errors"):
                        err = resp["Errors"][0]
                        raise AwsError(f"could not delete {len(resp['Errors'])} objects of "
                                       f"bucket {name}, e.g. {err.get('Key')}: "
                                       f"{err.get('Code')} {err.get('Message', '')}")
                    versions += len(batch)
            for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=name):
                for up in page.get("Uploads", []):
                    s3.abort_multipart_upload(Bucket=name, Key=up["Key"],
                                              UploadId=up["UploadId"])
        with aws_call("s3", f"deleting bucket {name}", region=region):
            s3.delete_bucket(Bucket=name)
        run.console.print(f"deleted bucket {name} in {region} "
                          f"({versions} object versions and delete markers)", markup=False)

    run.each("s3-bucket", buckets, bucket)


# -- the whole teardown ----------------------------------------------------------------------

def _kept(found: Iterable[Found], keep_data: bool) -> list[Found]:
    return [f for f in found if not (keep_data and f.kind == "s3-bucket")]


def teardown(session: str, *, profile: str | None, console: Console, delete: bool,
             keep_data: bool = False, out: Path | None = None) -> list[Found]:
    """List (``delete=False``) or delete everything tagged with the session.

    Returns, without ``delete``, what would be deleted; with it, what is still there
    after a final sweep (empty: done). The bucket kept by ``keep_data`` is in neither.
    Raises ``AwsError`` when some region could not be read, since then nobody can say
    that nothing is left.
    """
    aws = Aws(profile)
    regions, confirmed = enabled_regions(aws)
    prices = Prices()
    first = scan(aws, session, regions=regions, confirmed=confirmed, prices=prices)
    regions = first.regions
    targets = _kept(first.found, keep_data)
    print_inventory(console, session, targets)
    for f in first.found:
        if f not in targets:
            console.print(f"bucket {f.name} in {f.region} is kept (--keep-data)",
                          markup=False)
    for e in first.errors:
        console.print(f"could not read {e}", markup=False)
    if not delete:
        if targets:
            console.print(f"nothing deleted (a list only); to delete it: "
                          f"labkit teardown --session {session} --yes", markup=False)
        _raise_unread(first)
        return targets
    if not targets and not first.errors:
        return []

    started = time.monotonic()
    run = _Run(aws, session, console)
    busy = sorted({f.region for f in first.found if f.region != GLOBAL})
    if first.errors:  # a region we could not read may still hold something: try it too
        busy = list(regions)
    compute = [f for f in targets if f.kind in {"instance", "emr-cluster"}]
    if compute:
        console.print(f"terminating {_and(compute)}{_in_regions(f.region for f in compute)}"
                      " and waiting until they are gone ...", markup=False)
        run.regions(lambda r: _terminate_compute(run, r),
                    sorted({f.region for f in compute}))
        run.report(["emr-cluster", "instance"], verb="terminated")
    run.regions(lambda r: _regional(run, r), busy)
    run.report(["volume", "elastic-ip", "network-interface", "security-group", "key-pair",
                "alarm", "sns-topic"])
    jobs: dict[str, Callable[[], None]] = {"IAM": lambda: _delete_iam(run),
                                           "S3": lambda: _delete_buckets(run, keep_data)}
    for what, r in zip(jobs, parallel(lambda job: job(), list(jobs.values()), workers=2)):
        if isinstance(r, BaseException):
            run.failed(f"{what} resources", GLOBAL, r)
    run.report(["iam-instance-profile", "iam-role", "iam-user", "iam-policy"])
    for line in run.failures:
        console.print(line, markup=False)

    final = scan(aws, session, regions=regions, confirmed=True)
    left = _kept(final.found, keep_data)
    seconds = time.monotonic() - started
    if left:
        console.print(f"{len(left)} tagged resources remain after {seconds:.0f} s:",
                      markup=False)
        print_inventory(console, session, left)
    else:
        console.print(f"session {session}: nothing tagged is left in "
                      f"{len(final.regions)} regions ({seconds:.0f} s)", markup=False)
        if out is not None and out.exists():
            console.print(f"the session folder {out} is kept; its credentials and "
                          "handouts no longer open anything", markup=False)
    for e in final.errors:
        console.print(f"could not read {e}", markup=False)
    _raise_unread(final)
    return left


def _and(found: Sequence[Found]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for f in found:
        counts[f.kind] += 1
    return " and ".join(label(k, n) for k, n in counts.items())
