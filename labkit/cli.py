"""The ``labkit`` command: parse, call the library, print. Exit codes are decided here only.

0 done; 1 finished but some seats failed (named); 2 bad input, refused, or nothing
could start. Errors are a few plain lines; a traceback only with ``-v``.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from labkit.config import Config, default_config, load_config, starter_toml
from labkit.errors import InputError, LabkitError

F = TypeVar("F", bound=Callable[..., Any])

EXAMPLE_ROSTER = """student_id,name,email,group,region
ana.silva,Ana Silva,ana.silva@example.edu,,
bruno.costa,Bruno Costa,bruno.costa@example.edu,,
carla.dias,Carla Dias,carla.dias@example.edu,team-a,
duarte.lopes,Duarte Lopes,duarte.lopes@example.edu,team-a,
eva.martins,Eva Martins,eva.martins@example.edu,,us-east-1
"""


class SeatsFailed(Exception):
    """The command finished, but these seats did not: exit 1."""

    def __init__(self, failures: dict[str, str],
                 hint: str = "run the same command again to retry only these seats") -> None:
        super().__init__(f"{len(failures)} seats failed")
        self.failures = failures
        self.hint = hint


@dataclass
class Options:
    config_path: str | None
    session: str | None
    out: str | None
    profile: str | None
    yes: bool
    verbose: bool

    def config(self, *, required: bool = True, fallback_session: str = "example-class") -> Config:
        """The config, from -c, else ./labkit.toml; without a file, defaults when allowed."""
        if self.config_path:
            return load_config(Path(self.config_path), session_override=self.session)
        default = Path("labkit.toml")
        if default.exists():
            return load_config(default, session_override=self.session)
        if required:
            raise InputError("no labkit.toml in this folder", path="labkit.toml",
                             hint="run `labkit init` to write one, or pass -c PATH")
        return default_config(self.session or fallback_session)

    def out_dir(self, config: Config) -> Path:
        return Path(self.out) if self.out else Path(f"labkit-{config.session}")


console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def common(func: F) -> F:
    """The options every command takes (CONTRACT.md), gathered into one ``Options``."""

    @click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                  help="config file (default ./labkit.toml)")
    @click.option("--session", help="session name, overrides the config")
    @click.option("--out", type=click.Path(file_okay=False),
                  help="session folder (default ./labkit-<session>/)")
    @click.option("--profile", help="AWS profile (standard boto3 credential chain)")
    @click.option("--yes", is_flag=True, help="do not ask questions")
    @click.option("-v", "--verbose", is_flag=True, help="show details and tracebacks")
    @functools.wraps(func)
    def wrapper(config_path: str | None, session: str | None, out: str | None,
                profile: str | None, yes: bool, verbose: bool, **kwargs: Any) -> Any:
        opts = Options(config_path, session, out, profile, yes, verbose)
        if verbose:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
            logging.getLogger("botocore").setLevel(logging.WARNING)
            logging.getLogger("paramiko").setLevel(logging.WARNING)
        return func(opts, **kwargs)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="labkit")
def cli() -> None:
    """labkit: a ready machine (and EMR cluster) for every student, a printed card with the
    password, a bill kept in check, and nothing left behind."""


@cli.command()
@click.argument("directory", required=False, default=".",
                type=click.Path(file_okay=False))
@click.option("--session", default="my-class", help="session name to write")
@click.option("--force", is_flag=True, help="overwrite existing files")
def init(directory: str, session: str, force: bool) -> None:
    """Write a starter labkit.toml and roster.csv to edit."""
    from labkit.config import SESSION_RE

    if not SESSION_RE.fullmatch(session):
        raise InputError(f"invalid session name {session!r}", key="--session",
                         hint="use a-z, 0-9 and '-', at most 32 characters")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    files = {target / "labkit.toml": starter_toml(session),
             target / "roster.csv": EXAMPLE_ROSTER}
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise InputError(f"{', '.join(existing)} already exists; nothing written",
                         hint="edit the existing files, or use --force to overwrite")
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")
    console.print("next: edit both, then `labkit plan roster.csv`")


@cli.command()
@click.argument("roster", type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="read nothing from AWS")
@common
def plan(opts: Options, roster: str, offline: bool) -> None:
    """Check roster and config, show seats per region, what will be created and the cost."""
    from labkit import pipeline, report

    config = opts.config(required=False)
    result = pipeline.make_plan(config, Path(roster), offline=offline, profile=opts.profile)
    report.print_plan(console, result)


@cli.command()
@click.argument("roster", type=click.Path(dir_okay=False))
@click.option("--allow-over-budget", is_flag=True,
              help="provision even if the plan costs more than budget.max_hourly_usd")
@common
def provision(opts: Options, roster: str, allow_over_budget: bool) -> None:
    """Launch, bootstrap, create clusters and IAM, write credentials and handouts.

    Re-running converges: only what is missing is created, failed seats are retried."""
    from labkit import report
    from labkit.provision import Provisioner
    from labkit.roster import load_roster

    config = opts.config()
    n_seats = len(load_roster(Path(roster)).seats)
    out = opts.out_dir(config)
    with report.ProgressBoard(console, n_seats) as board:
        prov = Provisioner(config, Path(roster), out, profile=opts.profile,
                           allow_over_budget=allow_over_budget, on_event=board.event)
        summary = prov.run()
    report.print_provision_summary(console, summary)
    if summary.failed:
        raise SeatsFailed(summary.failed)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object per seat, for scripts")
@common
def status(opts: Options, as_json: bool) -> None:
    """One row per seat: region, machine state, host, bootstrap, cluster state."""
    import json as jsonlib

    from labkit import lifecycle, report

    config = opts.config()
    rows = lifecycle.status(config, opts.out_dir(config), profile=opts.profile)
    if as_json:
        click.echo(jsonlib.dumps(rows, indent=2))
    else:
        report.print_status(console, rows)


@cli.command()
@common
def handouts(opts: Options) -> None:
    """Re-render credentials.csv and handouts.pdf from the session state."""
    from labkit import lifecycle

    config = opts.config()
    paths = lifecycle.rerender(config, opts.out_dir(config))
    for p in paths:
        console.print(f"wrote {p}", markup=False)


@cli.command()
@common
def stop(opts: Options) -> None:
    """Stop every seat's machine between class days (disks, files, passwords kept)."""
    from labkit import lifecycle

    config = opts.config()
    lifecycle.stop(config, opts.out_dir(config), profile=opts.profile, console=console)


@cli.command()
@common
def start(opts: Options) -> None:
    """Start the seats' machines again (and new clusters); reprint if addresses changed."""
    from labkit import lifecycle

    config = opts.config()
    failures = lifecycle.start(config, opts.out_dir(config), profile=opts.profile,
                               console=console)
    if failures:
        raise SeatsFailed(failures, hint="a seat without a machine needs `labkit provision "
                                         "ROSTER`; for the others run `labkit start` again")


@cli.command()
@click.option("--keep-data", is_flag=True, help="keep the session's S3 bucket")
@click.option("--all-sessions", is_flag=True,
              help="with --dry-run: list resources of every labkit session, in every region")
@click.option("--dry-run", is_flag=True, help="list, delete nothing")
@common
def teardown(opts: Options, keep_data: bool, all_sessions: bool, dry_run: bool) -> None:
    """Delete everything tagged with the session, in every region. Lists only, without --yes."""
    from labkit import teardown as td

    if all_sessions:
        if not dry_run:
            raise InputError("--all-sessions only lists (add --dry-run); tear sessions down "
                             "one at a time with --session NAME --yes")
        td.sweep_all(profile=opts.profile, console=console)
        return
    config = opts.config(required=opts.session is None)
    yes = opts.yes and not dry_run
    if not yes and not dry_run and sys.stdin.isatty() and console.is_terminal:
        found = td.inventory(config.session, profile=opts.profile)
        td.print_inventory(console, config.session, found)
        if not found or not click.confirm(f"delete all of this for session {config.session}?"):
            console.print("nothing deleted")
            return
        yes = True
    remaining = td.teardown(config.session, profile=opts.profile, console=console,
                            delete=yes, keep_data=keep_data, out=opts.out_dir(config))
    if yes and remaining:
        raise LabkitError(f"{len(remaining)} tagged resources remain after teardown",
                          hint="run `labkit teardown --yes` again; if they stay, "
                               "delete them in the AWS console")


@cli.command()
@click.argument("roster", type=click.Path(dir_okay=False))
@click.option("--keep", is_flag=True, help="leave the sandbox running for a look (Ctrl-C ends)")
@common
def rehearse(opts: Options, roster: str, keep: bool) -> None:
    """The whole pipeline on the local sandbox cloud: provision, log in to every seat with
    its printed password, tear down. Costs nothing, touches no AWS account."""
    from labkit import rehearsal

    config = opts.config(required=False, fallback_session="example-class")
    failures = rehearsal.run(config, Path(roster), out=opts.out_dir(config).with_name(
        opts.out_dir(config).name + "-rehearsal") if not opts.out else Path(opts.out),
        console=console, verbose=opts.verbose, keep=keep)
    if failures:
        raise SeatsFailed(failures)


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place where outcomes become exit codes."""
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted; nothing more was done")
        sys.exit(2)
    except click.exceptions.ClickException as e:
        e.show()
        sys.exit(2)
    except SeatsFailed as e:
        err_console.print(f"[bold red]{len(e.failures)} seat(s) failed:[/]")
        for seat, why in sorted(e.failures.items()):
            err_console.print(f"  {seat}: {why}", markup=False)
        err_console.print(e.hint, markup=False)
        sys.exit(1)
    except LabkitError as e:
        if verbose:
            traceback.print_exc()
        err_console.print(f"labkit: {e}", markup=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; run the same command again to resume")
        sys.exit(2)
    except Exception as e:  # the last resort: a plain line, the trace only with -v
        if verbose:
            traceback.print_exc()
        err_console.print(f"labkit: unexpected error: {type(e).__name__}: {e}\n"
                          "  run again with -v for details", markup=False)
        sys.exit(2)
    sys.exit(0)
