"""boto3 sessions and clients: the standard credential chain and nothing else.

boto3 sessions are not thread-safe, so every thread gets its own; the region is always
passed explicitly; nothing is written to ``os.environ``. ``AWS_ENDPOINT_URL`` (and the
per-service variants) are honoured by botocore itself, which is how the sandbox cloud
and any other emulator are reached, with no special case in labkit.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from labkit.errors import CredentialsError

TAG_SESSION = "labkit:session"
TAG_SEAT = "labkit:seat"

_RETRIES = {"mode": "adaptive", "max_attempts": 8}


class Aws:
    """Clients for one instructor's credentials, one per service and region.

    A boto3 *session* is not thread-safe, but the low-level *clients* are: so the session
    is made once, under a lock, and each client is made once from it (under the same
    lock) and shared by every thread. A session per thread would parse the service models
    again in each (about 0.15 s of CPU and 20+ MB per thread).
    """

    def __init__(self, profile: str | None = None, *, quick: bool = False) -> None:
        self.profile = profile
        # quick: for look-ups that must never make `plan` hang (offline laptops).
        self._config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 2} if quick else _RETRIES,
            connect_timeout=3 if quick else 10,
            read_timeout=10 if quick else 60,
            max_pool_connections=64,
        )
        self._lock = threading.RLock()
        self._session: boto3.Session | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._count_lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def session(self) -> boto3.Session:
        with self._lock:
            if self._session is None:
                try:
                    s = (boto3.Session(profile_name=self.profile) if self.profile
                         else boto3.Session())
                except botocore.exceptions.ProfileNotFound:
                    raise CredentialsError(f"AWS profile {self.profile!r} not found",
                                           hint="check ~/.aws/config, or leave out --profile"
                                           ) from None
                s.events.register("before-call.*.*", self._count)
                self._session = s
            return self._session

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        found = self._clients.get(key)
        if found is None:
            with self._lock:
                found = self._clients.get(key)
                if found is None:
                    found = self.session().client(service, region_name=region,
                                                  config=self._config)
                    self._clients[key] = found
        return found

    def _count(self, model: Any, **_: Any) -> None:
        with self._count_lock:
            self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def has_credentials(self) -> bool:
        try:
            return self.session().get_credentials() is not None
        except CredentialsError:
            return False

    def account_id(self) -> str:
        from labkit.aws.errors import aws_call

        with aws_call("sts", "reading the account id"):
            return str(self.client("sts", "us-east-1").get_caller_identity()["Account"])


def session_tags(session: str, seat: str | None = None) -> list[dict[str, str]]:
    tags = [{"Key": TAG_SESSION, "Value": session}]
    if seat is not None:
        tags.append({"Key": TAG_SEAT, "Value": seat})
    return tags


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}
