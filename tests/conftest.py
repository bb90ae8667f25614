"""Test-wide set-up.

The whole test process runs inside the sandbox's private network, entered here before
any thread starts (a network namespace is per thread; threads inherit it from the one
that starts them). Nothing a test does can then reach the real AWS or the internet.
On a host where that is refused, the tests that start a Sandbox fail with the reason
(they never skip); the others still run.
"""

from __future__ import annotations

import pytest

from labkit.sandbox import enter_isolated_network_for_tests


def pytest_configure(config: pytest.Config) -> None:
    enter_isolated_network_for_tests()


# -- the sandbox cloud and a class on it, for tests that drive labkit end to end ----------

import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

from labkit.rehearsal import toml_value  # noqa: E402
from labkit.sandbox import Sandbox  # noqa: E402

WHEELHOUSE = Path("/var/cache/labkit/wheels")


@dataclass
class Course:
    """One class on the sandbox cloud: a folder with labkit.toml and roster.csv, and the
    labkit CLI run in it as an instructor would (a subprocess, standard AWS variables)."""

    dir: Path
    cloud: Sandbox
    session: str = "test-class"
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.dir / f"labkit-{self.session}"

    def write(self, students: Sequence[str] | Sequence[dict[str, str]], *,
              regions: Sequence[str] | None = None, emr_mode: str = "none",
              apt: Sequence[str] = (), pip: Sequence[str] = (), parallel: int = 32,
              ssh_wait_seconds: int = 60, extra: str = "", materials: str = "",
              emr: dict[str, Any] | None = None, **top: Any) -> None:
        """``materials`` goes to [bootstrap], ``emr`` adds keys to [emr]; ``extra`` is raw
        TOML appended after [budget]; other keywords are top-level keys."""
        rows = [s if isinstance(s, dict) else {"student_id": s} for s in students]
        cols = ["student_id", "name", "email", "group", "region"]
        with open(self.dir / "roster.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for r in rows:
                w.writerow({c: r.get(c, "") for c in cols})
        regions = list(regions or self.cloud.regions)
        values = {"session": self.session, "regions": regions,
                  "ssh_config": str(self.cloud.ssh_config_path), "parallel": parallel,
                  "ssh_wait_seconds": ssh_wait_seconds, **top}
        lines = [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines += ["", "[images]"] + [f'"{r}" = {toml_value(self.cloud.image_for(r))}'
                                     for r in self.cloud.regions]
        lines += ["", "[bootstrap]", f"apt_packages = {toml_value(list(apt))}",
                  f"pip_packages = {toml_value(list(pip))}"]
        if materials:
            lines.append(f"materials = {toml_value(materials)}")
        emr_values = {"mode": emr_mode, "instance_count": 2, **(emr or {})}
        lines += ["", "[emr]"] + [f"{k} = {toml_value(v)}" for k, v in emr_values.items()]
        lines += ["", "[budget]", "max_hourly_usd = 10000.0"]
        (self.dir / "labkit.toml").write_text("\n".join(lines) + "\n" + extra)

    def env(self) -> dict[str, str]:
        env = self.cloud.environ(os.environ)
        env.update(self.env_extra)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "labkit", *args]

    def labkit(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.dir, env=self.env(), text=True,
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), cwd=self.dir, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)

    def credentials(self) -> list[dict[str, str]]:
        with open(self.out / "credentials.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def state(self) -> dict[str, Any]:
        return json.loads((self.out / "state.json").read_text())

    def boto(self, service: str, region: str) -> Any:
        """A boto3 client for inspecting what labkit left behind (never for driving it)."""
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.cloud.endpoint_url,
                            aws_access_key_id=self.cloud.aws_env()["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.cloud.aws_env()["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture
def make_cloud(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """Start sandbox clouds for a test; every one is stopped when the test ends."""
    clouds: list[Sandbox] = []

    def make(regions: Sequence[str] = ("eu-west-1",), **knobs: Any) -> Sandbox:
        knobs.setdefault("wheelhouse", WHEELHOUSE if WHEELHOUSE.is_dir() else None)
        cloud = Sandbox(tmp_path / f"cloud{len(clouds)}", regions=list(regions), **knobs)
        clouds.append(cloud)
        return cloud.start()

    yield make
    for cloud in clouds:
        cloud.stop()


@pytest.fixture
def make_course(tmp_path: Path, make_cloud: Callable[..., Sandbox]
                ) -> Callable[..., Course]:
    def make(regions: Sequence[str] = ("eu-west-1",), session: str = "test-class",
             **knobs: Any) -> Course:
        cloud = make_cloud(regions, **knobs)
        folder = tmp_path / f"course-{session}"
        folder.mkdir()
        return Course(folder, cloud, session)

    return make
