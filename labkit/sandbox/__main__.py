"""``python -m labkit.sandbox``: a sandbox cloud in the foreground, for benchmarks and poking.

    python -m labkit.sandbox --workdir /tmp/sb --regions eu-west-1,us-east-1 \\
        [--capacity eu-west-1=10] [--vcpu-quota us-east-1=64] [--ssh-delay 2] \\
        [--wheelhouse DIR] -- CMD [ARG...]

Enters a private network, starts the sandbox, runs CMD with the sandbox's AWS
variables (and without the caller's AWS_* ones), tears everything down, and exits with
CMD's status. Without CMD it waits until interrupted (Ctrl-C), printing what to export.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from labkit.errors import LabkitError
from labkit.sandbox.cloud import Sandbox
from labkit.sandbox.netns import enter_isolated_network


def _pairs(text: str, option: str) -> dict[str, int]:
    result: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        region, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{option}: expected REGION=N[,REGION=N...], got {item!r}")
        result[region.strip()] = int(value)
    return result


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.sandbox",
        description="Run labkit's local sandbox cloud (moto + one sshd per machine) and a "
                    "command against it.")
    parser.add_argument("--workdir", type=Path, required=True,
                        help="where the sandbox keeps logs, machine seeds and ssh_config")
    parser.add_argument("--regions", default="eu-west-1",
                        help="comma-separated regions to prepare images in (default eu-west-1)")
    parser.add_argument("--capacity", default="", type=lambda t: _pairs(t, "--capacity"),
                        help="REGION=N: at most N pending+running instances there")
    parser.add_argument("--vcpu-quota", default="", type=lambda t: _pairs(t, "--vcpu-quota"),
                        help="REGION=V: EC2 Standard vCPU quota there")
    parser.add_argument("--ssh-delay", type=float, default=0.0,
                        help="seconds each machine waits before sshd listens")
    parser.add_argument("--dead-ssh", type=int, default=0,
                        help="the first N machines to boot never answer SSH")
    parser.add_argument("--login-user", default="ubuntu")
    parser.add_argument("--wheelhouse", type=Path, default=None,
                        help="a directory of wheels that pip in the machines installs from")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- CMD [ARG...] to run with the sandbox's AWS variables")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        # First, while this process still has a single thread.
        enter_isolated_network()
        sandbox = Sandbox(args.workdir, regions=[r for r in args.regions.split(",") if r],
                          capacity=args.capacity or None, vcpu_quota=args.vcpu_quota or None,
                          ssh_delay=args.ssh_delay, dead_ssh=args.dead_ssh,
                          login_user=args.login_user, wheelhouse=args.wheelhouse)
        with sandbox:
            env = sandbox.environ()
            env["LABKIT_SANDBOX_SSH_CONFIG"] = str(sandbox.ssh_config_path)
            if args.command:
                return subprocess.run(args.command, env=env, check=False).returncode
            print(f"sandbox up; in this process's network only. Endpoint {sandbox.endpoint_url}")
            for key, value in sandbox.aws_env().items():
                print(f"  {key}={shlex.quote(value)}")
            print(f"  images: {sandbox.images()}\n  ssh: ssh -F {sandbox.ssh_config_path} "
                  f"{sandbox.login_user}@<address or instance id>\nCtrl-C to stop.")
            done = threading.Event()

            def stop(signum: int, frame: FrameType | None) -> None:
                done.set()

            signal.signal(signal.SIGINT, stop)
            signal.signal(signal.SIGTERM, stop)
            done.wait()
            return 0
    except LabkitError as exc:
        print(f"labkit sandbox: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
