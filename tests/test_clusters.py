"""Issue 4 on the sandbox cloud: EMR clusters per seat (or shared), session storage,
per-seat permissions with no instructor keys on any machine, and mrjob ready on every
seat. labkit is driven through its CLI as an instructor drives it; boto3 only looks at
what it left behind, SSH reads what a student would find on the seat.

What moto cannot show, a small proxy (``Recorder``, reached through the contract's
``AWS_ENDPOINT_URL_<SERVICE>``) keeps: labkit's EMR, EC2 and S3 calls to the
millisecond, ``AutoTerminationPolicy`` (moto drops it), the materials link's signature
(moto checks none), and which key signed each call of mrjob on a seat (moto enforces no
IAM here, so those calls are judged against the seat's policy by ``allowed``). It also
names the region in EMR's Host header, since moto's server otherwise files every
cluster under us-east-1 whatever region the call was signed for.

One class is provisioned per module fixture and the read-only checks share it; the
tests that change a class (re-runs, a lost cluster, stop/start) get their own.
"""

from __future__ import annotations

import fnmatch
import http.client
import io
import json
import re
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import WHEELHOUSE, Course
from mrjob.conf import load_opts_from_mrjob_conf

from labkit import policies
from labkit.bootstrap import Target, open_connection
from labkit.sandbox.proxy import read_body
from labkit.sandbox import Sandbox
from labkit.sandbox.cloud import SANDBOX_KEY_ID, SANDBOX_SECRET

DATA = Path(__file__).parent / "data"
LIVE = {"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"}
IDLE_MINUTES = 45


# -- a recording proxy: what labkit sent, where moto forgets it ---------------------------

@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    target: str          # X-Amz-Target (EMR's JSON protocol), "" for S3
    agent: str
    body: bytes
    at: float = 0.0      # time.time() when it arrived
    key_id: str = ""     # the access key that signed it (header or query)

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_KEY = re.compile(r"Credential=([A-Z0-9]+)/")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "expect",
        "content-length", "proxy-authorization", "proxy-authenticate", "trailers"}


class Recorder:
    """An HTTP proxy to the sandbox's endpoint that keeps every request it forwards."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self._body()
                url = urlsplit(self.path)
                query = parse_qs(url.query, keep_blank_values=True)
                signed = _KEY.search(self.headers.get("Authorization", "")
                                     + " Credential=" + query.get("X-Amz-Credential", [""])[0])
                with recorder._lock:
                    recorder.sent.append(Sent(
                        self.command, url.path, query, self.headers.get("X-Amz-Target", ""),
                        self.headers.get("User-Agent", ""), body, time.time(),
                        signed.group(1) if signed else ""))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                scope = _SCOPE.search(self.headers.get("Authorization", ""))
                if scope and scope.group(2) == "elasticmapreduce":
                    # moto's server files every EMR call under us-east-1 unless the Host
                    # names the region (it ignores the signature's scope), so clusters of
                    # two regions would share one list; EMR's real host names it.
                    headers = {k: v for k, v in headers.items() if k.lower() != "host"}
                    headers["Host"] = f"elasticmapreduce.{scope.group(1)}.amazonaws.com"
                conn = http.client.HTTPConnection(recorder.upstream.hostname or "127.0.0.1",
                                                   recorder.upstream.port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP | {"server", "date"}:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            def _body(self) -> bytes:
                return read_body(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def times(self, operation: str) -> list[float]:
        """When each call of an EMR (JSON) or EC2 (query) operation arrived."""
        with self._lock:
            return [s.at for s in self.sent if s.target == f"ElasticMapReduce.{operation}"
                    or not s.target and s.method == "POST"
                    and parse_qs(s.body.decode(errors="replace")).get("Action") == [operation]]

    def emr_calls(self, operation: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s.json() for s in self.sent
                    if s.target == f"ElasticMapReduce.{operation}"]


def seat_call(sent: Sent, bucket: str, region: str) -> tuple[str, str, dict[str, str]]:
    """(IAM action, resource ARN, condition context) of one recorded EMR or S3 call."""
    if sent.target.startswith("ElasticMapReduce."):
        cluster = sent.json().get("ClusterId") or sent.json().get("JobFlowId", "")
        return (f"elasticmapreduce:{sent.target.split('.', 1)[1]}",
                f"arn:aws:elasticmapreduce:{region}:123456789012:cluster/{cluster}", {})
    _, name, *rest = sent.path.split("/", 2)
    assert name == bucket, sent.path
    key, q = (rest[0] if rest else ""), sent.query
    if not key:
        if "location" in q:
            return "s3:GetBucketLocation", f"arn:aws:s3:::{bucket}", {}
        assert sent.method in ("GET", "HEAD") and not set(q) - {
            "list-type", "prefix", "delimiter", "encoding-type", "continuation-token",
            "max-keys", "marker", "start-after"}, (sent.method, sent.path, q)
        return ("s3:ListBucket", f"arn:aws:s3:::{bucket}",
                {"s3:prefix": q["prefix"][0]} if "prefix" in q else {})
    action = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
              "POST": "s3:PutObject",
              "DELETE": "s3:AbortMultipartUpload" if "uploadId" in q else "s3:DeleteObject"}
    return action[sent.method], f"arn:aws:s3:::{bucket}/{key}", {}


def allowed(policy: dict[str, Any], action: str, resource: str,
            context: dict[str, str]) -> bool:
    """IAM's verdict for one request under one policy: an explicit Deny wins, else some
    Allow must match action, resource and conditions (the operators labkit uses)."""
    def matches(patterns: Any, value: str) -> bool:
        return any(fnmatch.fnmatchcase(value.lower(), p.lower())
                   for p in ([patterns] if isinstance(patterns, str) else patterns))

    def holds(condition: dict[str, dict[str, Any]]) -> bool:
        for operator, pairs in condition.items():
            base = operator.removesuffix("IfExists")
            for key, want in pairs.items():
                if key not in context:
                    if operator.endswith("IfExists"):
                        continue
                    return False
                wants = [want] if isinstance(want, str) else want
                if base == "StringEquals" and context[key] not in wants:
                    return False
                if base == "StringLike" and not matches(wants, context[key]):
                    return False
                if base not in ("StringEquals", "StringLike"):
                    raise AssertionError(f"no evaluation for {operator}")
        return True

    verdict = False
    for st in policy["Statement"]:
        if matches(st["Action"], action) and matches(st["Resource"], resource) \
                and holds(st.get("Condition", {})):
            if st["Effect"] == "Deny":
                return False
            verdict = True
    return verdict


# -- looking at a class -----------------------------------------------------------------

def seat_target(course: Course, seat: str) -> Target:
    st = course.state()["seats"][seat]
    return Target(seat, st["host"], "ubuntu", st["host_key_public"],
                  course.out / "id_ed25519", str(course.cloud.ssh_config_path))


def on_seat(course: Course, seat: str, command: str, *, timeout: float = 120) -> str:
    """Run a command on the seat over SSH as its login user; fail the test if it fails."""
    conn = open_connection(seat_target(course, seat))
    try:
        result = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    finally:
        conn.close()
    assert result.exited == 0, f"{seat}: {command!r} exited {result.exited}:\n" \
                               f"{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def put_on_seat(course: Course, seat: str, files: dict[str, bytes]) -> None:
    conn = open_connection(seat_target(course, seat))
    try:
        for remote, data in files.items():
            conn.put(io.BytesIO(data), remote)
    finally:
        conn.close()


def emr_client(course: Course, region: str) -> Any:
    """An EMR client on the endpoint labkit uses for EMR (the recorder, if any)."""
    import boto3

    endpoint = course.env_extra.get("AWS_ENDPOINT_URL_EMR", course.cloud.endpoint_url)
    return boto3.client("emr", region_name=region, endpoint_url=endpoint,
                        aws_access_key_id=SANDBOX_KEY_ID, aws_secret_access_key=SANDBOX_SECRET)


def clusters_of(course: Course, *, live_only: bool = True) -> list[dict[str, Any]]:
    """Every cluster in the sandbox (all regions), described, with its tags as a dict."""
    out = []
    for region in course.cloud.regions:
        emr = emr_client(course, region)
        states = sorted(LIVE) if live_only else sorted(LIVE | {"TERMINATING", "TERMINATED",
                                                                "TERMINATED_WITH_ERRORS"})
        for c in emr.list_clusters(ClusterStates=states)["Clusters"]:
            d = emr.describe_cluster(ClusterId=c["Id"])["Cluster"]
            d["region"] = region
            d["tags"] = {t["Key"]: t["Value"] for t in d.get("Tags", [])}
            out.append(d)
    return out


def seat_confs(course: Course) -> dict[str, str]:
    return {seat: on_seat(course, seat, "cat ~/.mrjob.conf")
            for seat in course.state()["seats"]}


def emr_opts(conf_text: str, tmp: Path) -> dict[str, Any]:
    """The emr runner's options as mrjob itself reads them from that file."""
    path = tmp / "mrjob.conf"
    path.write_text(conf_text)
    loaded = load_opts_from_mrjob_conf("emr", str(path))
    assert [p for p, _ in loaded] == [str(path)]
    return dict(loaded[0][1])


def materials_archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {"week1/README.txt": "Welcome to week 1\n",
                           "week1/words.txt": "to be or not to be\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def log_times(log: Path, marker: str) -> list[datetime]:
    """Times of ``--- bootstrap <marker>`` lines in a seat log (written in local time)."""
    out = []
    for line in log.read_text().splitlines():
        if line.startswith(f"--- bootstrap {marker} "):
            naive = datetime.strptime(line.split(f"{marker} ", 1)[1], "%Y-%m-%d %H:%M:%S")
            out.append(naive.astimezone(UTC))
    return out


# -- the class most tests share: per-seat clusters, access keys, materials, mrjob ----------

@dataclass
class Taught:
    course: Course
    recorder: Recorder
    seats: dict[str, dict[str, Any]] = field(default_factory=dict)
    bucket: str = ""


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Taught]:
    root = tmp_path_factory.mktemp("emr-class")
    cloud = Sandbox(root / "cloud", regions=["eu-west-1", "us-east-1"],
                    wheelhouse=WHEELHOUSE if WHEELHOUSE.is_dir() else None)
    cloud.start()
    recorder = Recorder(cloud.endpoint_url).start()
    try:
        (root / "course").mkdir()
        course = Course(root / "course", cloud, "emr-class", env_extra={
            "AWS_ENDPOINT_URL_EMR": recorder.url, "AWS_ENDPOINT_URL_S3": recorder.url,
            "AWS_ENDPOINT_URL_EC2": recorder.url})
        archive = materials_archive(root / "course" / "week1.tar.gz")
        pair = {"group": "pair", "region": "us-east-1"}
        course.write([{"student_id": "ana"}, {"student_id": "bruno", **pair},
                      {"student_id": "carla", **pair}],
                     emr_mode="per-seat", pip=["mrjob"], materials=str(archive),
                     emr={"idle_timeout_minutes": IDLE_MINUTES},
                     student_credentials="access-keys")
        result = course.labkit("provision", "roster.csv")
        assert result.returncode == 0, result.stdout + result.stderr
        state = course.state()
        yield Taught(course, recorder, state["seats"], state["bucket"])
    finally:
        recorder.stop()
        cloud.stop()


def test_every_seat_has_one_cluster_tagged_with_it_that_ends_itself_when_idle(
        taught: Taught) -> None:
    course, seats = taught.course, taught.seats
    assert sorted(seats) == ["ana", "pair"]
    live = clusters_of(course)
    for seat, st in seats.items():
        mine = [c for c in live if c["tags"].get("labkit:seat") == seat]
        assert len(mine) == 1, f"{seat}: {len(mine)} live clusters"
        c = mine[0]
        assert c["Id"] == st["cluster_id"]
        assert c["region"] == st["region"] == st["cluster_region"]
        assert c["tags"]["labkit:session"] == "emr-class"
        assert c["VisibleToAllUsers"] is True
        assert c["AutoTerminate"] is False          # KeepJobFlowAliveWhenNoSteps
        assert c["TerminationProtected"] is False   # so that idle and `stop` can end it
        assert c["LogUri"] == f"s3://{taught.bucket}/logs/{seat}/"
    assert len(live) == len(seats)
    # What moto drops: the idle auto-termination, and the tags being in the create call.
    sent = taught.recorder.emr_calls("RunJobFlow")
    assert len(sent) == len(seats)
    for call in sent:
        assert call["AutoTerminationPolicy"] == {"IdleTimeout": IDLE_MINUTES * 60}
        assert call["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
        tags = {t["Key"]: t["Value"] for t in call["Tags"]}
        assert tags["labkit:session"] == "emr-class" and tags["labkit:seat"] in seats
    assert not taught.recorder.emr_calls("AddTags"), "tags must be in the create call"
    # The account's default EMR roles exist (created if missing).
    iam = course.boto("iam", "us-east-1")
    for role in policies.emr_service_role_names():
        iam.get_role(RoleName=role)


def test_every_seat_mrjob_conf_names_its_cluster_and_scratch(taught: Taught,
                                                             tmp_path: Path) -> None:
    for seat, text in seat_confs(taught.course).items():
        st = taught.seats[seat]
        opts = emr_opts(text, tmp_path)
        assert opts["cluster_id"] == st["cluster_id"]
        assert opts["region"] == st["cluster_region"]
        assert opts["cloud_tmp_dir"] == f"s3://{taught.bucket}/seats/{seat}/tmp/"


def test_status_credentials_and_handouts_show_each_seat_cluster(taught: Taught) -> None:
    import subprocess

    course = taught.course
    result = course.labkit("status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["seat"]: r for r in json.loads(result.stdout)}
    for seat, st in taught.seats.items():
        assert rows[seat]["cluster_id"] == st["cluster_id"]
        assert rows[seat]["cluster_state"] in LIVE
    for row in course.credentials():
        assert row["cluster_id"] == taught.seats[row["seat"]]["cluster_id"]
    text = subprocess.run(["pdftotext", str(course.out / "handouts.pdf"), "-"], check=True,
                          capture_output=True, text=True).stdout
    for seat, st in taught.seats.items():   # one card per student; the pair has two
        assert text.count(st["cluster_id"]) == (2 if seat == "pair" else 1), seat


def test_clusters_are_created_while_the_machines_launch(taught: Taught) -> None:
    """Not after them (EMR takes minutes to start: provisioning must not wait twice)."""
    course = taught.course
    created = sorted(c["Status"]["Timeline"]["CreationDateTime"] for c in clusters_of(course))
    launched, ended = [], []
    for seat, st in taught.seats.items():
        ec2 = course.boto("ec2", st["region"])
        inst = ec2.describe_instances(InstanceIds=[st["instance_id"]])
        launched.append(inst["Reservations"][0]["Instances"][0]["LaunchTime"])
        ended += log_times(course.out / "logs" / f"{seat}.log", "ended")
    assert len(created) == len(launched) == len(ended) == 2
    # Every cluster existed before any machine had finished its set-up...
    assert created[-1] < min(ended), (created, ended)
    # ...and the first before the last machine was launched (EC2 keeps whole seconds;
    # the recorder has labkit's calls to the millisecond).
    assert created[0].replace(microsecond=0) <= max(launched), (created, launched)
    flows, runs = taught.recorder.times("RunJobFlow"), taught.recorder.times("RunInstances")
    assert len(flows) == len(runs) == 2
    assert min(flows) < max(runs), (flows, runs)


def test_session_bucket_holds_materials_that_every_seat_fetched_by_signed_link(
        taught: Taught) -> None:
    course = taught.course
    s3 = course.boto("s3", "eu-west-1")
    tags = {t["Key"]: t["Value"]
            for t in s3.get_bucket_tagging(Bucket=taught.bucket)["TagSet"]}
    assert tags == {"labkit:session": "emr-class"}
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert buckets == [taught.bucket]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=taught.bucket,
                                                 Prefix="materials/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith("/week1.tar.gz")
    for seat in taught.seats:
        assert on_seat(course, seat, "cat ~/materials/week1/words.txt") == "to be or not to be\n"
    # The seats downloaded it (Python's urllib, not boto3) with a signed, expiring link.
    gets = [s for s in taught.recorder.sent
            if s.method == "GET" and s.path.endswith(keys[0]) and "urllib" in s.agent]
    assert len(gets) == len(taught.seats)
    for get in gets:  # SigV4 (S3 refuses SigV2 in newer regions), for hours, not for ever
        assert get.query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert get.query["X-Amz-Signature"] and get.query["X-Amz-Credential"]
        assert 0 < int(get.query["X-Amz-Expires"][0]) <= 24 * 3600


def test_each_seat_has_its_own_profile_and_keys_and_never_the_instructors(
        taught: Taught) -> None:
    course = taught.course
    iam = course.boto("iam", "us-east-1")
    state = course.state()
    for seat, st in taught.seats.items():
        name = f"labkit-emr-class-{seat}"
        doc = policies.seat_policy(session="emr-class", seat=seat, bucket=taught.bucket)
        ec2 = course.boto("ec2", st["region"])
        inst = ec2.describe_instances(InstanceIds=[st["instance_id"]])
        profile = inst["Reservations"][0]["Instances"][0]["IamInstanceProfile"]["Arn"]
        assert profile.endswith(f":instance-profile/labkit/{name}")
        roles = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
        assert [r["RoleName"] for r in roles] == [name]
        assert iam.get_role_policy(RoleName=name, PolicyName="labkit")["PolicyDocument"] == doc
        # access-keys mode: the seat's own user, its policy, its key on the seat.
        attached = iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
        assert len(attached) == 1
        arn = attached[0]["PolicyArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        got = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
        assert got["Document"] == doc
        keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
        creds = on_seat(course, seat, "cat ~/.aws/credentials")
        mine = state["extra"]["access_keys"][seat]
        assert [k["AccessKeyId"] for k in keys] == [mine["id"]]
        assert f"aws_access_key_id = {mine['id']}\n" in creds
        assert mine["id"] != SANDBOX_KEY_ID
        # Nowhere on the seat is the instructor's key or secret.
        found = on_seat(course, seat, f"grep -rlsF -e {SANDBOX_KEY_ID} -e {SANDBOX_SECRET} "
                                      "~ /etc /tmp || true")
        assert found == ""
    others = {s: v["id"] for s, v in state["extra"]["access_keys"].items()}
    assert len(set(others.values())) == len(taught.seats)


WORDS = "the cat sat on the mat\nthe dog ate the cat's hat\n"


def test_mrjob_word_count_runs_inline_on_a_seat(taught: Taught) -> None:
    course = taught.course
    put_on_seat(course, "ana", {"mr_wordcount.py": (DATA / "mr_wordcount.py").read_bytes(),
                                "input.txt": WORDS.encode()})
    out = on_seat(course, "ana", "~/venv/bin/python mr_wordcount.py -r inline input.txt")
    counts = {json.loads(k): int(v) for k, v in (ln.split("\t") for ln in out.splitlines())}
    assert counts == {"the": 4, "cat": 1, "sat": 1, "on": 1, "mat": 1, "dog": 1, "ate": 1,
                      "cat's": 1, "hat": 1}


def test_mrjob_on_emr_submits_a_step_to_the_seat_own_cluster(taught: Taught) -> None:
    """``-r emr`` with no flags: the seat's mrjob.conf, its own keys, the emulator's
    endpoint (the recorder in front of the sandbox, reached from the seat on loopback as
    the seats share the sandbox's network). moto keeps a step RUNNING for ever, so the
    job is stopped once its step is there."""
    course, seat = taught.course, "pair"
    mine, other = taught.seats[seat]["cluster_id"], taught.seats["ana"]["cluster_id"]
    region = taught.seats[seat]["cluster_region"]
    put_on_seat(course, seat, {"mr_wordcount.py": (DATA / "mr_wordcount.py").read_bytes(),
                               "input.txt": WORDS.encode()})
    pid = on_seat(course, seat,
                  f"AWS_ENDPOINT_URL={taught.recorder.url} setsid timeout 120 "
                  "~/venv/bin/python mr_wordcount.py -r emr input.txt "
                  "> emr.log 2>&1 < /dev/null & echo $!").strip()
    emr = emr_client(course, region)
    steps: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    try:
        while not steps and time.monotonic() < deadline:
            time.sleep(1)
            steps = emr.list_steps(ClusterId=mine)["Steps"]
    finally:
        on_seat(course, seat, f"kill {pid} 2>/dev/null; cat emr.log")
    log = on_seat(course, seat, "cat emr.log")
    assert steps, f"no step on {mine}; mrjob said:\n{log}"
    assert not emr_client(course, "eu-west-1").list_steps(ClusterId=other)["Steps"]
    args = " ".join(steps[0]["Config"]["Args"])
    assert f"s3://{taught.bucket}/seats/{seat}/tmp/" in args
    uploaded = course.boto("s3", "eu-west-1").list_objects_v2(
        Bucket=taught.bucket, Prefix=f"seats/{seat}/tmp/")
    assert uploaded.get("KeyCount", 0) > 0
    # moto enforces no IAM here: check each call mrjob made, signed with the seat's own
    # key, against the seat's policy as IAM would judge it (with the cluster's real tags).
    key = course.state()["extra"]["access_keys"][seat]["id"]
    doc = policies.seat_policy(session="emr-class", seat=seat, bucket=taught.bucket)
    cluster_tags = {f"aws:ResourceTag/{k}": v for k, v in next(
        c for c in clusters_of(course) if c["Id"] == mine)["tags"].items()}
    calls = [s for s in taught.recorder.sent if s.key_id == key]
    assert {s.target for s in calls} >= {"ElasticMapReduce.AddJobFlowSteps"}
    for sent in calls:
        action, resource, context = seat_call(sent, taught.bucket, region)
        if action.startswith("elasticmapreduce:"):
            assert resource.endswith(f"/{mine}")
            context = cluster_tags
        assert allowed(doc, action, resource, context), (action, resource, context)


# -- classes that change: re-runs, a lost cluster, stop and start, shared mode ---------------

def test_rerun_finds_clusters_and_replaces_only_a_lost_one_and_stop_start(
        make_course: Any, tmp_path: Path) -> None:
    course = make_course(["eu-west-1"], session="rerun-class")
    course.write(["ana", "bruno"], emr_mode="per-seat")
    first = course.labkit("provision", "roster.csv")
    assert first.returncode == 0, first.stdout + first.stderr
    ids = {s: st["cluster_id"] for s, st in course.state()["seats"].items()}
    # instance-profile mode (the default): no AWS keys at all on the seats.
    for seat in ids:
        assert on_seat(course, seat, "ls ~/.aws") == "config\n"

    # A create whose answer was lost (RunJobFlow has no idempotency token) left bruno
    # a second cluster; the re-run keeps the one his mrjob.conf names and ends the other.
    emr = emr_client(course, "eu-west-1")
    extra = emr.run_job_flow(
        Name="labkit rerun-class/bruno", ReleaseLabel="emr-7.5.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole",
        Tags=[{"Key": "labkit:session", "Value": "rerun-class"},
              {"Key": "labkit:seat", "Value": "bruno"}])["JobFlowId"]
    again = course.labkit("provision", "roster.csv")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {c["Id"] for c in clusters_of(course)} == set(ids.values())
    assert {s: st["cluster_id"] for s, st in course.state()["seats"].items()} == ids
    assert emr.describe_cluster(ClusterId=extra)["Cluster"]["Status"]["State"] in (
        "TERMINATING", "TERMINATED")
    assert extra in again.stdout

    before = seat_confs(course)
    bruno_stamp = on_seat(course, "bruno", "stat -c %Y.%i ~/.mrjob.conf")
    emr.terminate_job_flows(JobFlowIds=[ids["ana"]])          # the world ends it
    third = course.labkit("provision", "roster.csv")
    assert third.returncode == 0, third.stdout + third.stderr
    now = {s: st["cluster_id"] for s, st in course.state()["seats"].items()}
    assert now["bruno"] == ids["bruno"] and now["ana"] not in ("", ids["ana"])
    live = clusters_of(course)
    assert sorted(c["Id"] for c in live) == sorted(now.values())
    assert {c["tags"]["labkit:seat"] for c in live if c["Id"] == now["ana"]} == {"ana"}
    after = seat_confs(course)
    assert emr_opts(after["ana"], tmp_path)["cluster_id"] == now["ana"]
    assert after["bruno"] == before["bruno"]
    assert on_seat(course, "bruno", "stat -c %Y.%i ~/.mrjob.conf") == bruno_stamp

    # Between class days: stop ends every cluster; start makes new ones and tells the seats.
    stop = course.labkit("stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not clusters_of(course)
    start = course.labkit("start")
    assert start.returncode == 0, start.stdout + start.stderr
    fresh = {s: st["cluster_id"] for s, st in course.state()["seats"].items()}
    live_ids = {c["Id"]: c for c in clusters_of(course)}
    assert set(fresh.values()) == set(live_ids) and len(live_ids) == 2
    assert not set(fresh.values()) & (set(now.values()) | set(ids.values()))
    for seat, text in seat_confs(course).items():
        assert emr_opts(text, tmp_path)["cluster_id"] == fresh[seat]
        assert live_ids[fresh[seat]]["tags"]["labkit:seat"] == seat
    all_clusters = clusters_of(course, live_only=False)
    old = [c for c in all_clusters if c["Id"] in set(now.values())]
    assert old and all(c["Status"]["State"].startswith("TERMINAT") for c in old)
    for row in course.credentials():
        assert row["cluster_id"] == fresh[row["seat"]]


def test_shared_mode_one_cluster_for_the_session(make_course: Any, tmp_path: Path) -> None:
    course = make_course(["eu-west-1"], session="shared-class")
    course.write(["ana", "bruno"], emr_mode="shared")
    result = course.labkit("provision", "roster.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    live = clusters_of(course)
    assert len(live) == 1
    shared = live[0]
    assert shared["tags"] == {"labkit:session": "shared-class",
                              "for-use-with-amazon-emr-managed-policies": "true"}
    bucket = course.state()["bucket"]
    assert shared["LogUri"] == f"s3://{bucket}/logs/"
    for seat, text in seat_confs(course).items():
        opts = emr_opts(text, tmp_path)
        assert opts["cluster_id"] == shared["Id"]
        assert opts["cloud_tmp_dir"] == f"s3://{bucket}/seats/{seat}/tmp/"


def test_mode_none_makes_no_cluster_and_mrjob_conf_names_none(make_course: Any,
                                                             tmp_path: Path) -> None:
    course = make_course(["eu-west-1"], session="no-emr-class")
    course.write(["ana"], emr_mode="none")
    result = course.labkit("provision", "roster.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not clusters_of(course, live_only=False)
    roles = course.boto("iam", "us-east-1").list_roles()["Roles"]
    assert sorted(r["RoleName"] for r in roles) == ["labkit-no-emr-class-ana"]  # the seat's
    opts = emr_opts(seat_confs(course)["ana"], tmp_path)
    assert "cluster_id" not in opts and opts["region"] == "eu-west-1"
    status = course.labkit("status", "--json")
    assert [(r["cluster_id"], r["cluster_state"]) for r in json.loads(status.stdout)] == [("", "")]
    assert [r["cluster_id"] for r in course.credentials()] == [""]
