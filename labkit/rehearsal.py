"""``labkit rehearse``: the real pipeline against the local sandbox cloud.

The sandbox (moto for AWS, one real sshd per machine) runs in a network namespace of its
own with loopback only; labkit itself runs as a child process there, unchanged, reaching
"AWS" through ``AWS_ENDPOINT_URL`` and the machines through an OpenSSH client config.
Nothing here can reach a real AWS account or cost money.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console

from labkit.bootstrap import SshFailure, Target, password_login
from labkit.config import Config
from labkit.roster import load_roster

WHEELHOUSE = Path("/var/cache/labkit/wheels")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def rehearsal_toml(config: Config, images: dict[str, str], ssh_config: Path) -> str:
    """The instructor's config, with the sandbox's images and address map."""
    b, e, g = config.bootstrap, config.emr, config.budget
    materials = str(config.resolve_path(b.materials)) if b.materials else ""
    top = {
        "session": config.session, "regions": list(config.regions),
        "instance_type": config.instance_type, "image": config.image,
        "login_user": config.login_user, "connect": config.connect,
        "ssh_config": str(ssh_config), "ssh_cidr": config.ssh_cidr,
        "parallel": config.parallel, "ssh_wait_seconds": min(config.ssh_wait_seconds, 120),
        "volume_gb": config.volume_gb, "student_credentials": config.student_credentials,
        "stable_addresses": config.stable_addresses, "course_title": config.course_title,
        "page_size": config.page_size,
    }
    sections: dict[str, Mapping[str, object]] = {
        "images": images,
        "bootstrap": {"apt_packages": list(b.apt_packages), "pip_packages": list(b.pip_packages),
                      "materials": materials, "commands": list(b.commands)},
        "emr": {"mode": e.mode, "release": e.release, "instance_type": e.instance_type,
                "instance_count": e.instance_count,
                "idle_timeout_minutes": e.idle_timeout_minutes},
        "budget": {"max_hourly_usd": g.max_hourly_usd, "alarm_usd": list(g.alarm_usd),
                   "alarm_email": g.alarm_email},
    }
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, values in sections.items():
        lines += ["", f"[{name}]"] + [f"{json.dumps(k)} = {toml_value(v)}"
                                      for k, v in values.items()]
    return "\n".join(lines) + "\n"


def login_all(credentials: Path, *, ssh_config: str, key_file: Path,
              known: dict[str, str], parallel: int = 32) -> dict[str, str]:
    """Log in to every seat as a student would: printed host, user and password."""
    with open(credentials, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    failures: dict[str, str] = {}

    def one(row: dict[str, str]) -> None:
        target = Target(seat=row["seat"], host=row["host"], username=row["username"],
                        host_key=known.get(row["host"], ""), key_file=key_file,
                        ssh_config=ssh_config)
        try:
            who = password_login(target, row["password"])
            if who != row["username"]:
                failures[row["student_id"]] = f"logged in as {who!r}"
        except SshFailure as e:
            failures[row["student_id"]] = f"password login failed: {e}"
        except Exception as e:
            failures[row["student_id"]] = f"password login failed: {type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, rows))
    return failures


def read_known_hosts(path: Path) -> dict[str, str]:
    known: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            names, keytype, blob = line.split()[:3]
            for name in names.split(","):
                known[name] = f"{keytype} {blob}"
    return known


def run(config: Config, roster_path: Path, *, out: Path, console: Console, verbose: bool,
        keep: bool = False) -> dict[str, str]:
    from labkit.sandbox import Sandbox, enter_isolated_network

    roster = load_roster(roster_path)  # bad input: exit 2 before any sandbox starts
    enter_isolated_network()
    workdir = Path(tempfile.mkdtemp(prefix="labkit-sandbox-"))
    regions = list(dict.fromkeys(list(config.regions) + [s.region for s in roster.seats
                                                          if s.region]))
    console.print(f"rehearsal of session {config.session}: {len(roster.students)} students, "
                  f"{len(roster.seats)} seats, on the local sandbox cloud (no AWS account is "
                  "touched)")
    if out.exists():
        shutil.rmtree(out)
    failures: dict[str, str] = {}
    try:
        with Sandbox(workdir / "cloud", regions=regions,
                     wheelhouse=WHEELHOUSE if WHEELHOUSE.is_dir() else None) as sandbox:
            cfg_path = workdir / "labkit.toml"
            cfg_path.write_text(rehearsal_toml(config, sandbox.images(),
                                               sandbox.ssh_config_path))
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("AWS_") or k == "AWS_CA_BUNDLE"}
            env.update(sandbox.aws_env())
            env["AWS_CONFIG_FILE"] = str(workdir / "no-aws-config")
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(workdir / "no-aws-credentials")
            base = [sys.executable, "-m", "labkit"]
            common = ["-c", str(cfg_path), "--out", str(out)] + (["-v"] if verbose else [])
            console.print("[bold]1/3 provision[/]")
            prov = subprocess.run(base + ["provision", str(roster_path.resolve())] + common
                                  + ["--yes"], env=env, check=False)
            if prov.returncode == 2:
                return {"provision": "refused or could not start (see above)"}
            console.print("[bold]2/3 log in to every seat with its printed password[/]")
            known = read_known_hosts(out / "known_hosts") if (out / "known_hosts").exists() \
                else {}
            if (out / "credentials.csv").exists():
                failures = login_all(out / "credentials.csv",
                                     ssh_config=str(sandbox.ssh_config_path),
                                     key_file=out / "id_ed25519", known=known,
                                     parallel=config.parallel)
            else:
                failures = {"provision": "no credentials.csv was written"}
            ok = len(roster.students) - len(failures)
            console.print(f"{ok}/{len(roster.students)} students logged in with the password "
                          "on their card")
            if keep:
                console.print(f"sandbox kept: AWS_ENDPOINT_URL={sandbox.endpoint_url}, "
                              f"ssh -F {out / 'ssh_config'} <seat>; Ctrl-C to end")
                try:
                    import time

                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
            console.print("[bold]3/3 teardown[/]")
            td = subprocess.run(base + ["teardown"] + common + ["--yes"], env=env, check=False)
            if td.returncode != 0:
                failures["teardown"] = "resources remained after teardown"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"the rehearsal's handouts stay in {out} (look at handouts.pdf before "
                  "printing the real ones)")
    return failures
