"""A class's life after provision, driven through the CLI on the sandbox cloud.

Stop between class days and start again (passwords, files and clusters survive; new
addresses reach every session file), reprinting, the cost guard, teardown after a full
and after a killed provision, and the orphan check across sessions. boto3 is used only to
look at what labkit left behind (``sweep``) and, once, to make resources that are not
labkit's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from conftest import Course

from labkit.bootstrap import Target, password_login
from labkit.rehearsal import read_known_hosts

TAG = "labkit:session"
LIVE_CLUSTER = {"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"}
WIDE = {"COLUMNS": "200"}  # rich wraps at 80 columns in a pipe; tables stay one row a line


# -- looking at what labkit left behind --------------------------------------------------------

Resource = tuple[str, str, str]  # (kind, region, id)


def _tags(items: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def _regional(course: Course, region: str) -> list[tuple[str, Resource]]:
    """(session, resource) for every resource in ``region`` tagged labkit:session."""
    found: list[tuple[str, Resource]] = []
    ec2 = course.boto("ec2", region)

    def add(kind: str, rid: str, tags: dict[str, str]) -> None:
        if TAG in tags:
            found.append((tags[TAG], (kind, region, rid)))

    for page in ec2.get_paginator("describe_instances").paginate():
        for res in page["Reservations"]:
            for inst in res["Instances"]:
                if inst["State"]["Name"] != "terminated":
                    add("instance", inst["InstanceId"], _tags(inst.get("Tags")))
    for vol in ec2.describe_volumes()["Volumes"]:
        add("volume", vol["VolumeId"], _tags(vol.get("Tags")))
    for sg in ec2.describe_security_groups()["SecurityGroups"]:
        add("security-group", sg["GroupId"], _tags(sg.get("Tags")))
    for kp in ec2.describe_key_pairs()["KeyPairs"]:
        add("key-pair", kp["KeyName"], _tags(kp.get("Tags")))
    for eip in ec2.describe_addresses()["Addresses"]:
        add("elastic-ip", eip.get("AllocationId", eip.get("PublicIp", "")), _tags(eip.get("Tags")))
    for eni in ec2.describe_network_interfaces()["NetworkInterfaces"]:
        add("network-interface", eni["NetworkInterfaceId"], _tags(eni.get("TagSet")))
    emr = course.boto("emr", region)
    for page in emr.get_paginator("list_clusters").paginate(ClusterStates=sorted(LIVE_CLUSTER)
                                                            + ["TERMINATING"]):
        for c in page["Clusters"]:
            add("emr-cluster", c["Id"], _tags(emr.describe_cluster(ClusterId=c["Id"])
                                              ["Cluster"].get("Tags")))
    cw = course.boto("cloudwatch", region)
    for alarm in cw.describe_alarms()["MetricAlarms"]:
        add("alarm", alarm["AlarmName"],
            _tags(cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]))
    sns = course.boto("sns", region)
    for topic in sns.list_topics()["Topics"]:
        arn = topic["TopicArn"]
        add("sns-topic", arn, _tags(sns.list_tags_for_resource(ResourceArn=arn)["Tags"]))
    return found


def _global(course: Course) -> list[tuple[str, Resource]]:
    """IAM and S3: every role, profile, user, policy and bucket, whatever its name."""
    found: list[tuple[str, Resource]] = []
    iam = course.boto("iam", "us-east-1")
    for kind, listing, key, name, get, get_key, args in (
            ("iam-role", "list_roles", "Roles", "RoleName", "get_role", "Role", {}),
            ("iam-instance-profile", "list_instance_profiles", "InstanceProfiles",
             "InstanceProfileName", "get_instance_profile", "InstanceProfile", {}),
            ("iam-user", "list_users", "Users", "UserName", "get_user", "User", {}),
            ("iam-policy", "list_policies", "Policies", "Arn", "get_policy", "Policy",
             {"Scope": "Local"})):
        for item in getattr(iam, listing)(**args)[key]:
            ident = {"PolicyArn" if kind == "iam-policy" else name: item[name]}
            tags = _tags(getattr(iam, get)(**ident)[get_key].get("Tags"))
            if TAG in tags:
                found.append((tags[TAG], (kind, "global", item[name])))
    s3 = course.boto("s3", "us-east-1")
    for bucket in s3.list_buckets()["Buckets"]:
        try:
            tags = _tags(s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"])
        except botocore.exceptions.ClientError:
            tags = {}  # NoSuchTagSet
        if TAG in tags:
            found.append((tags[TAG], ("s3-bucket", "global", bucket["Name"])))
    return found


def all_regions(course: Course) -> list[str]:
    regions = course.boto("ec2", "us-east-1").describe_regions(AllRegions=True)["Regions"]
    return sorted(r["RegionName"] for r in regions)


def sweep(course: Course) -> dict[str, set[Resource]]:
    """session -> its tagged resources, in every region the cloud knows, plus IAM and S3."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        lists = list(pool.map(lambda r: _regional(course, r), all_regions(course)))
    by_session: dict[str, set[Resource]] = {}
    for session, res in [x for lst in lists for x in lst] + _global(course):
        by_session.setdefault(session, set()).add(res)
    return by_session


def kinds(resources: Iterable[Resource]) -> set[str]:
    return {kind for kind, _, _ in resources}


def session_instances(course: Course, region: str) -> list[dict[str, Any]]:
    pages = course.boto("ec2", region).get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{TAG}", "Values": [course.session]}])
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"]


# -- acting as a student and as an instructor ------------------------------------------------------

def run_ok(course: Course, *args: str) -> str:
    result = course.labkit(*args)
    assert result.returncode == 0, f"labkit {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def login(course: Course, row: dict[str, str], command: str = "id -un") -> str:
    """Log in as the seat's student: the printed host and password, the pinned host key."""
    known = read_known_hosts(course.out / "known_hosts")
    assert row["host"] in known, f"{row['host']} is not in known_hosts"
    target = Target(row["seat"], row["host"], row["username"], known[row["host"]],
                    course.out / "id_ed25519", str(course.cloud.ssh_config_path))
    return password_login(target, row["password"], command=command)


def pdftotext(path: Path) -> str:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing (Debian: poppler-utils)"
    return subprocess.run([tool, str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def cluster_state(course: Course, region: str, cluster_id: str) -> str:
    return str(course.boto("emr", region).describe_cluster(ClusterId=cluster_id)
               ["Cluster"]["Status"]["State"])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:.0f} s"
        time.sleep(0.3)


# -- between class days ---------------------------------------------------------------------------

def test_stop_then_start_keeps_passwords_and_files_and_reprints_new_addresses(
        make_course: Callable[..., Course]) -> None:
    course = make_course(["eu-west-1", "us-east-1"])
    course.env_extra.update(WIDE)
    course.write(["ana", "bruno", {"student_id": "carla", "region": "us-east-1"}])
    run_ok(course, "provision", "roster.csv")
    before = {r["seat"]: r for r in course.credentials()}
    for seat, row in before.items():
        assert login(course, row, f"echo notes of {seat} > ~/day1.txt && id -un") == "ubuntu"
    volumes = {r: {v["VolumeId"] for v in course.boto("ec2", r).describe_volumes()["Volumes"]}
               for r in ("eu-west-1", "us-east-1")}

    out = run_ok(course, "stop")
    assert "stopped 3 machines" in out and "labkit start" in out
    for region in ("eu-west-1", "us-east-1"):
        states = {i["State"]["Name"] for i in session_instances(course, region)}
        assert states == {"stopped"}, (region, states)
        kept = {v["VolumeId"] for v in course.boto("ec2", region).describe_volumes()["Volumes"]}
        assert volumes[region] <= kept, "a stopped machine lost its disk"
    status = run_ok(course, "status", "--json")
    assert '"state": "running"' not in status and status.count('"state": "stopped"') == 3
    assert "3 stopped (ana, bruno, carla): `labkit start`" in run_ok(course, "status")

    out = run_ok(course, "start")
    assert "started 3 machines" in out and "3 of 3 seats answer SSH" in out, out
    after = {r["seat"]: r for r in course.credentials()}
    live = {_tags(i["Tags"])["labkit:seat"]: i.get("PublicIpAddress")
            for r in ("eu-west-1", "us-east-1") for i in session_instances(course, r)}
    assert set(live) == set(before)
    changed = [s for s in before if before[s]["host"] != live[s]]
    # The sandbox, like EC2 without an Elastic IP, gives a new public address on start;
    # without a change this test would not test the reprint.
    assert changed == sorted(before), "the sandbox kept the addresses: nothing to check"
    known = read_known_hosts(course.out / "known_hosts")
    ssh_config = (course.out / "ssh_config").read_text()
    handouts = pdftotext(course.out / "handouts.pdf")
    for seat in changed:
        new, old = live[seat], before[seat]["host"]
        assert after[seat]["host"] == new
        assert after[seat]["password"] == before[seat]["password"]
        assert re.search(rf"^\s+{seat}: {re.escape(old)} -> {re.escape(new)}$", out, re.MULTILINE), out
        assert new in known and old not in known
        assert f"HostName {new}\n" in ssh_config and f"HostName {old}\n" not in ssh_config
        assert new in handouts and old not in handouts
    for seat, row in after.items():
        assert login(course, row, "cat ~/day1.txt") == f"notes of {seat}"

    # Reprinting from state: both files come back, every student's password on them.
    (course.out / "credentials.csv").unlink()
    (course.out / "handouts.pdf").unlink()
    run_ok(course, "handouts")
    assert {r["seat"]: r["password"] for r in course.credentials()} == \
        {s: r["password"] for s, r in before.items()}
    handouts = pdftotext(course.out / "handouts.pdf")
    for row in after.values():
        assert row["password"] in handouts and row["host"] in handouts


def test_stop_then_start_gives_every_seat_a_new_live_cluster(
        make_course: Callable[..., Course]) -> None:
    course = make_course(["eu-west-1"])
    course.write(["ana", "bruno"], emr_mode="per-seat")
    run_ok(course, "provision", "roster.csv")
    old = {r["seat"]: r["cluster_id"] for r in course.credentials()}
    assert all(old.values()) and len(set(old.values())) == 2

    # From a folder without the session's files (another computer, a lost folder): the
    # machines and clusters are found by their tags; no session folder is made up.
    out = run_ok(course, "stop", "--out", "elsewhere")
    assert "stopped 2 machines" in out and "terminated 2 EMR clusters" in out, out
    assert not (course.dir / "elsewhere").exists()
    assert {i["State"]["Name"] for i in session_instances(course, "eu-west-1")} == {"stopped"}
    for cid in old.values():
        assert cluster_state(course, "eu-west-1", cid) in {"TERMINATING", "TERMINATED"}

    out = run_ok(course, "start")
    assert "2 of 2 seats answer SSH" in out, out
    rows = {r["seat"]: r for r in course.credentials()}
    for seat, row in rows.items():
        conf = login(course, row, "cat ~/.mrjob.conf")
        named = set(re.findall(r"\bj-[A-Z0-9]+\b", conf))
        assert named == {row["cluster_id"]}, conf
        assert row["cluster_id"] != old[seat]
        assert cluster_state(course, "eu-west-1", row["cluster_id"]) in LIVE_CLUSTER
        assert row["cluster_id"] in pdftotext(course.out / "handouts.pdf")
    for cid in old.values():
        assert cluster_state(course, "eu-west-1", cid) in {"TERMINATING", "TERMINATED"}


# -- the cost guard ---------------------------------------------------------------------------------

def _budget(course: Course, usd: float) -> None:
    path = course.dir / "labkit.toml"
    text = path.read_text()
    assert "max_hourly_usd = 10000.0" in text
    path.write_text(text.replace("max_hourly_usd = 10000.0", f"max_hourly_usd = {usd}"))


def test_a_plan_over_budget_is_refused_until_allowed(make_course: Callable[..., Course]) -> None:
    course = make_course(["eu-west-1", "us-east-1"])
    course.env_extra.update(WIDE)
    course.write(["ana", "bruno", {"student_id": "carla", "region": "us-east-1"}])
    _budget(course, 0.01)

    plan = run_ok(course, "plan", "roster.csv")
    per_region = {}
    for region, seats in (("eu-west-1", 2), ("us-east-1", 1)):
        assert re.search(rf"{region}\W+{seats} × t3\.medium seats", plan), plan
        m = re.search(rf"{region} total\W+\$([\d.]+)", plan)
        assert m, plan
        per_region[region] = float(m.group(1))
    total = re.search(r"whole class: \$([\d.]+)/hour, over budget \(budget.max_hourly_usd = "
                      r"\$0\.01\)", plan)
    assert total, plan
    assert float(total.group(1)) == pytest.approx(sum(per_region.values()), abs=0.006)

    refused = course.labkit("provision", "roster.csv")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = refused.stderr
    assert f"${float(total.group(1)):,.2f}/hour" in message and "$0.01" in message, message
    assert "--allow-over-budget" in message and "Traceback" not in message
    assert not course.out.exists()
    for region in all_regions(course):
        ec2 = course.boto("ec2", region)
        assert not ec2.describe_instances()["Reservations"], region
        assert not ec2.describe_key_pairs()["KeyPairs"], region
    assert sweep(course) == {}

    run_ok(course, "provision", "roster.csv", "--allow-over-budget")
    assert len(course.credentials()) == 3
    assert len(session_instances(course, "eu-west-1")) == 2


def _offline_plan(tmp_path: Path, budget: float) -> str:
    (tmp_path / "labkit.toml").write_text(
        'session = "priced"\nregions = ["eu-west-1"]\n'
        '[emr]\nmode = "per-seat"\ninstance_type = "m5.large"\ninstance_count = 2\n'
        f"[budget]\nmax_hourly_usd = {budget}\n")
    (tmp_path / "roster.csv").write_text("student_id\nana\nbruno\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run([sys.executable, "-m", "labkit", "plan", "--offline", "roster.csv"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**env, **WIDE}, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_total_with_unknown_prices_is_a_lower_bound(tmp_path: Path) -> None:
    # labkit's table has no EMR fee for m5.large in eu-west-1: that line has no price.
    text = _offline_plan(tmp_path, 1000.0)
    region = re.search(r"eu-west-1 total\W+at least \$([\d.]+)", text)
    assert region, text
    assert re.search(rf"whole class: at least \${float(region.group(1)):.2f}/hour", text), text
    assert "within budget" not in text and "not checked against the budget" in text
    assert "no price known for: eu-west-1: 2 × EMR m5.large ×2" in text

    # A lower bound already above the budget is over it, for sure.
    over = _offline_plan(tmp_path, 0.01)
    assert "at least $" in over and "over budget" in over


# -- teardown -----------------------------------------------------------------------------------------

def _not_labkits(course: Course) -> dict[str, str]:
    """Resources without the session tag, some named like the session's own."""
    ec2 = course.boto("ec2", "eu-west-1")
    image = course.cloud.image_for("eu-west-1")
    instance = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                     {"Key": "Name", "Value": "a colleague's machine"}]}]
                                 )["Instances"][0]["InstanceId"]
    # Same name as labkit's group, in a region the class does not use (teardown looks in
    # every region).
    west = course.boto("ec2", "us-west-2")
    vpc = west.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    group = west.create_security_group(GroupName=f"labkit-{course.session}",
                                       Description="not labkit's", VpcId=vpc["VpcId"])["GroupId"]
    bucket = f"labkit-{course.session}-notes"
    course.boto("s3", "us-east-1").create_bucket(Bucket=bucket)
    role = f"labkit-{course.session}-colleague"
    course.boto("iam", "us-east-1").create_role(
        RoleName=role, AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}')
    return {"instance": instance, "group": group, "bucket": bucket, "role": role}


def _still_there(course: Course, made: dict[str, str]) -> None:
    inst = course.boto("ec2", "eu-west-1").describe_instances(
        InstanceIds=[made["instance"]])["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] == "running"
    assert course.boto("ec2", "us-west-2").describe_security_groups(
        GroupIds=[made["group"]])["SecurityGroups"]
    assert made["bucket"] in {b["Name"] for b in
                              course.boto("s3", "us-east-1").list_buckets()["Buckets"]}
    course.boto("iam", "us-east-1").get_role(RoleName=made["role"])


def test_teardown_leaves_nothing_of_the_session_and_nothing_else_is_touched(
        make_course: Callable[..., Course]) -> None:
    course = make_course(["eu-west-1", "us-east-1"])
    course.env_extra.update(WIDE)
    made = _not_labkits(course)
    course.write(["ana", {"student_id": "bruno", "region": "us-east-1"}], emr_mode="per-seat")
    run_ok(course, "provision", "roster.csv")
    other_dir = course.dir.parent / "course-other-class"
    other_dir.mkdir()
    other = Course(other_dir, course.cloud, "other-class", dict(WIDE))
    other.write(["zoe"])
    run_ok(other, "provision", "roster.csv")

    before = sweep(course)
    mine, theirs = before.get(course.session, set()), before.get("other-class", set())
    assert {"instance", "security-group", "key-pair", "emr-cluster", "iam-role",
            "iam-instance-profile", "s3-bucket", "alarm", "sns-topic"} <= kinds(mine)
    assert "instance" in kinds(theirs)

    # The orphan check: every live session, its age and its cost; nothing deleted.
    out = run_ok(course, "teardown", "--all-sessions", "--dry-run")
    for session in (course.session, "other-class"):
        row = re.search(rf"^.*\b{session}\b.*$", out, re.MULTILINE)
        assert row, out
        assert re.search(r"\b\d+ (min|h|d)\b", row.group(0)), row.group(0)  # its age
        assert re.search(r"\$\d+\.\d\d", row.group(0)), row.group(0)       # its cost
    assert sweep(course) == before

    # Without --yes and no terminal to ask on: a list, nothing deleted.
    listed = course.labkit("teardown")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "nothing deleted" in listed.stdout
    for _, _, rid in [r for r in mine if r[0] == "instance"]:
        assert rid in listed.stdout
    assert sweep(course) == before

    run_ok(course, "teardown", "--yes")
    after = sweep(course)
    assert after.get(course.session, set()) == set()
    assert after.get("other-class") == theirs
    _still_there(course, made)
    zoe = other.credentials()[0]
    assert login(other, zoe) == "ubuntu"

    # Starting a class that was torn down is refused: new clusters would only cost money.
    refused = course.labkit("start")
    assert refused.returncode == 2 and "no machine" in refused.stderr, refused.stderr
    for region in ("eu-west-1", "us-east-1"):
        assert not course.boto("emr", region).list_clusters(
            ClusterStates=sorted(LIVE_CLUSTER))["Clusters"]


def test_teardown_after_a_killed_provision_without_state_leaves_nothing(
        make_course: Callable[..., Course]) -> None:
    course = make_course(["eu-west-1", "us-east-1"])
    course.write(["ana", "bruno", "carla", {"student_id": "dora", "region": "us-east-1"}],
                 emr_mode="per-seat")
    proc = course.popen("provision", "roster.csv")
    try:
        wait_for("a first machine", lambda: bool(session_instances(course, "eu-west-1")
                                                  or session_instances(course, "us-east-1"))
                 or proc.poll() is not None)
        assert proc.poll() is None, "provision finished before it could be killed:\n" + \
            (proc.stdout.read() if proc.stdout else "")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    left = sweep(course).get(course.session, set())
    assert "instance" in kinds(left)
    (course.out / "state.json").unlink()

    out = run_ok(course, "teardown", "--yes")
    assert "nothing tagged is left" in out, out
    assert sweep(course).get(course.session, set()) == set()
