"""The sandbox's AWS endpoint: a reverse proxy in front of moto that adds what moto lacks.

Everything is forwarded to moto unchanged, except:

* EC2 ``RunInstances`` is checked against the sandbox's knobs first and refused with
  the errors EC2 really returns: ``VcpuLimitExceeded`` (HTTP 400) when the region's
  running Standard-family vCPUs would pass the quota, ``InsufficientInstanceCapacity``
  (HTTP 500, which botocore retries like any 5xx) when the region's pending+running
  instances would pass its capacity. As on EC2, a request whose MinCount fits but
  MaxCount does not launches as many as fit.
* Service Quotas ``GetServiceQuota``/``GetAWSDefaultServiceQuota``/``ListServiceQuotas``
  for EC2's "Running On-Demand Standard instances" quota (L-1216C47A): moto 5.2 knows
  only VPC quotas and answers NoSuchResource.
* SSM ``GetParameter(s)`` for Canonical's public Ubuntu image parameters
  (``/aws/service/canonical/ubuntu/...``): moto refuses to store anything under /aws.

After any call that changes instance states the sandbox is told, so machines follow
within a fraction of a second.
"""

from __future__ import annotations

import gzip
import http.client
import importlib.util
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape

VCPU_QUOTA_CODE = "L-1216C47A"
VCPU_QUOTA_NAME = "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"
DEFAULT_VCPU_QUOTA = 1152
ACCOUNT_ID = "123456789012"   # moto's default account
UBUNTU_PARAMETER = re.compile(r"^/aws/service/canonical/ubuntu/.+/ami-id$")
STATE_CHANGING_ACTIONS = frozenset({"RunInstances", "StartInstances", "StopInstances",
                                    "TerminateInstances", "RebootInstances"})

_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailers", "transfer-encoding", "upgrade", "expect",
                         "content-length"})
# EC2's quota classes: Standard is the families starting with these letters, minus the
# ones with their own quotas (Inf, HPC, DL, Trn, Mac, U-).
_STANDARD_FIRST = frozenset("acdhimrtz")
_OWN_QUOTA_PREFIXES = ("inf", "hpc", "dl", "trn", "mac", "u-")
_FALLBACK_VCPUS = {"nano": 2, "micro": 2, "small": 2, "medium": 2, "large": 2, "xlarge": 4}


@dataclass
class Knobs:
    """Failures the sandbox plays, per region; read live, so tests may change them."""

    capacity: dict[str, int] = field(default_factory=dict)
    vcpu_quota: dict[str, int] = field(default_factory=dict)


@dataclass
class ProxyHooks:
    """What the proxy needs from the sandbox around it."""

    ec2_client: Callable[[str], Any]               # a boto3 EC2 client on moto, for a region
    image_for: Callable[[str], str]                # region -> sandbox AMI id
    instances_changed: Callable[[str, str, list[str]], None]   # region, action, instance ids


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: AwsProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (a test's SIGKILL, Ctrl-C) is no sandbox fault.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class AwsProxy:
    """The HTTP endpoint labkit talks to; see the module docstring for what it adds."""

    def __init__(self, upstream_port: int, knobs: Knobs, hooks: ProxyHooks) -> None:
        self.upstream_port = upstream_port
        self.knobs = knobs
        self.hooks = hooks
        self._region_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._vcpus: dict[str, int] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> int:
        """Listen on a free loopback port and serve from a background thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="labkit-sandbox-aws-proxy", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- the request path ------------------------------------------------------------

    def handle(self, request: _Handler) -> None:
        body = request.read_body()
        region, service = _scope(request.headers.get("Authorization", ""), request.path)
        target = request.headers.get("X-Amz-Target", "")
        if service == "ec2" and request.command == "POST":
            params = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
            action = dict(params).get("Action", "")
            if action == "RunInstances":
                with self._region_lock(region):
                    refusal, params = self._admit(region, params)
                    if refusal is not None:
                        request.reply(*refusal)
                        return
                    body = urlencode(params).encode()
                    reply = self._forward(request, body)
                self.hooks.instances_changed(region, action, [])
                request.reply(*reply)
                return
            if action in STATE_CHANGING_ACTIONS:
                reply = self._forward(request, body)
                ids = [v for k, v in params if k.startswith("InstanceId.")]
                self.hooks.instances_changed(region, action, ids)
                request.reply(*reply)
                return
        elif target.startswith("ServiceQuotasV20190624."):
            answer = self._service_quota(region, target.split(".", 1)[1], body)
            if answer is not None:
                request.reply(200, {"Content-Type": "application/x-amz-json-1.1"}, answer)
                return
        elif target in ("AmazonSSM.GetParameter", "AmazonSSM.GetParameters"):
            answer_ssm = self._ssm(request, region, target.split(".", 1)[1], body)
            if answer_ssm is not None:
                request.reply(*answer_ssm)
                return
        request.reply(*self._forward(request, body))

    def _forward(self, request: _Handler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        region, service = _scope(request.headers.get("Authorization", ""), request.path)
        if service == "elasticmapreduce" and region:
            # moto's server files EMR calls under the region named in the Host header, not
            # the one the call was signed for; real EMR answers per regional endpoint.
            headers = {k: v for k, v in headers.items() if k.lower() != "host"}
            headers["Host"] = f"elasticmapreduce.{region}.amazonaws.com"
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        try:
            conn.request(request.command, request.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            out = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, out, data
        finally:
            conn.close()

    def _region_lock(self, region: str) -> threading.Lock:
        # RunInstances calls of one region are admitted one at a time, or two parallel
        # launches could each see room for themselves and together pass the limit.
        with self._locks_lock:
            return self._region_locks.setdefault(region, threading.Lock())

    # -- RunInstances knobs ----------------------------------------------------------

    def _admit(self, region: str, params: list[tuple[str, str]]
               ) -> tuple[tuple[int, dict[str, str], bytes] | None, list[tuple[str, str]]]:
        values = dict(params)
        instance_type = values.get("InstanceType", "m1.small")
        try:
            min_count = int(values.get("MinCount", "1"))
            max_count = int(values.get("MaxCount", str(min_count)))
        except ValueError:
            return None, params                       # let moto say what is wrong
        capacity = self.knobs.capacity.get(region)
        quota = self.knobs.vcpu_quota.get(region, DEFAULT_VCPU_QUOTA)
        per_instance = self.vcpus(instance_type)
        standard = is_standard(instance_type)
        count, used_vcpus = self._usage(region)
        fits = max_count
        if standard:
            fits = min(fits, max(quota - used_vcpus, 0) // max(per_instance, 1))
            if fits < min_count:
                return _ec2_error(400, "VcpuLimitExceeded", (
                    f"You have requested more vCPU capacity than your current vCPU limit of "
                    f"{quota} allows for the instance bucket that the specified instance type "
                    f"belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to "
                    f"request an adjustment to this limit.")), params
        if capacity is not None:
            fits = min(fits, max(capacity - count, 0))
            if fits < min_count:
                return _ec2_error(500, "InsufficientInstanceCapacity", (
                    f"We currently do not have sufficient {instance_type} capacity in the "
                    f"Availability Zone you requested ({region}a). Our system will be working "
                    f"on provisioning additional capacity. You can currently get "
                    f"{instance_type} capacity by not specifying an Availability Zone in your "
                    f"request or choosing {region}b, {region}c.")), params
        if fits < max_count:
            params = [(k, str(fits) if k == "MaxCount" else v) for k, v in params]
        return None, params

    def _usage(self, region: str) -> tuple[int, int]:
        """Pending+running instances in the region, and their Standard-family vCPUs."""
        client = self.hooks.ec2_client(region)
        count = vcpus = 0
        pages = client.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
        for page in pages:
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    count += 1
                    if is_standard(instance["InstanceType"]):
                        vcpus += self.vcpus(instance["InstanceType"])
        return count, vcpus

    def vcpus(self, instance_type: str) -> int:
        """vCPUs of an instance type, from moto's copy of EC2's instance type table."""
        if self._vcpus is None:
            self._vcpus = _load_vcpus()
        if instance_type in self._vcpus:
            return self._vcpus[instance_type]
        return _FALLBACK_VCPUS.get(instance_type.rpartition(".")[2], 2)

    # -- Service Quotas --------------------------------------------------------------

    def _service_quota(self, region: str, operation: str, body: bytes) -> bytes | None:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return None
        if request.get("ServiceCode") != "ec2":
            return None
        quota = self._vcpu_quota(region)
        if operation in ("GetServiceQuota", "GetAWSDefaultServiceQuota"):
            if request.get("QuotaCode") != VCPU_QUOTA_CODE:
                return None
            return json.dumps({"Quota": quota}).encode()
        if operation in ("ListServiceQuotas", "ListAWSDefaultServiceQuotas"):
            return json.dumps({"Quotas": [quota]}).encode()
        return None

    def _vcpu_quota(self, region: str) -> dict[str, Any]:
        value = float(self.knobs.vcpu_quota.get(region, DEFAULT_VCPU_QUOTA))
        return {
            "ServiceCode": "ec2",
            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": f"arn:aws:servicequotas:{region}:{ACCOUNT_ID}:ec2/{VCPU_QUOTA_CODE}",
            "QuotaCode": VCPU_QUOTA_CODE,
            "QuotaName": VCPU_QUOTA_NAME,
            "Value": value,
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
            "UsageMetric": {
                "MetricNamespace": "AWS/Usage",
                "MetricName": "ResourceCount",
                "MetricDimensions": {"Class": "Standard/OnDemand", "Resource": "vCPU",
                                     "Service": "EC2", "Type": "Resource"},
                "MetricStatisticRecommendation": "Maximum",
            },
            "QuotaAppliedAtLevel": "ACCOUNT",
        }

    # -- SSM public parameters -------------------------------------------------------

    def _ssm(self, request: _Handler, region: str, operation: str, body: bytes
             ) -> tuple[int, dict[str, str], bytes] | None:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return None
        json_type = {"Content-Type": "application/x-amz-json-1.1"}
        if operation == "GetParameter":
            name = str(payload.get("Name", ""))
            if not UBUNTU_PARAMETER.match(name):
                return None
            return 200, json_type, json.dumps({"Parameter": self._parameter(region, name)}).encode()
        names = [str(n) for n in payload.get("Names", [])]
        ours = [n for n in names if UBUNTU_PARAMETER.match(n)]
        if not ours:
            return None
        result: dict[str, Any] = {"Parameters": [], "InvalidParameters": []}
        rest = [n for n in names if n not in ours]
        if rest:
            status, headers, data = self._forward(request, json.dumps({**payload, "Names": rest}).encode())
            if status != 200:
                return status, headers, data
            result = json.loads(data)
        result["Parameters"] = [*result.get("Parameters", []),
                                *(self._parameter(region, n) for n in ours)]
        return 200, json_type, json.dumps(result).encode()

    def _parameter(self, region: str, name: str) -> dict[str, Any]:
        return {"Name": name, "Type": "String", "Value": self.hooks.image_for(region),
                "Version": 1, "LastModifiedDate": time.time(), "DataType": "text",
                "ARN": f"arn:aws:ssm:{region}::parameter{name}"}


def read_body(request: BaseHTTPRequestHandler) -> bytes:
    """A request's body, whether sent with a length or chunked (boto3 streams uploads)."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while request.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(request.rfile.read(size))
            request.rfile.readline()
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length else b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each reply would wait
    # for the client's delayed ACK (~200 ms a request).
    disable_nagle_algorithm = True
    server: _Server

    def _any(self) -> None:
        try:
            self.server.proxy.handle(self)
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            self.reply(*_ec2_error(503, "ServiceUnavailable", f"sandbox proxy: moto did not answer ({exc})"))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any

    def read_body(self) -> bytes:
        return read_body(self)

    def reply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Requests carry user-data and keys; the proxy never logs them.
        return


def _scope(authorization: str, path: str) -> tuple[str, str]:
    """Region and service from SigV4's credential scope (header or presigned query)."""
    match = _SCOPE.search(authorization)
    if match is None:
        query = dict(parse_qsl(urlsplit(path).query))
        credential = query.get("X-Amz-Credential", "")
        parts = credential.split("/")
        if len(parts) >= 5:
            return parts[2], parts[3]
        return "us-east-1", ""
    return match.group(1), match.group(2)


def _ec2_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    request_id = str(uuid.uuid4())
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}"
            f"</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
    return status, {"Content-Type": "text/xml;charset=UTF-8", "x-amzn-RequestId": request_id}, body.encode()


def is_standard(instance_type: str) -> bool:
    """Whether the type counts against the Standard (A, C, D, H, I, M, R, T, Z) vCPU quota."""
    family = instance_type.split(".", 1)[0].lower()
    return bool(family) and family[0] in _STANDARD_FIRST and not family.startswith(_OWN_QUOTA_PREFIXES)


def _load_vcpus() -> dict[str, int]:
    # Found without importing moto: importing moto.ec2 costs a second of start-up.
    try:
        spec = importlib.util.find_spec("moto")
        if spec is None or not spec.submodule_search_locations:
            return {}
        package = Path(next(iter(spec.submodule_search_locations)))
        with gzip.open(package / "ec2" / "resources" / "instance_types.json.gz") as f:
            data = json.load(f)
        return {name: int(info["VCpuInfo"]["DefaultVCpus"]) for name, info in data.items()
                if "VCpuInfo" in info}
    except (ImportError, OSError, ValueError, KeyError):
        return {}
