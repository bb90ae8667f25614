"""Bad input through the real command: `python -m labkit plan --offline ...` in a fresh folder.

What the instructor must see: exit code 2, a plain message on stderr naming the file and
the line (roster) or key (config) and what to do, no traceback (unless -v), and nothing
created in the folder. The cases run as separate processes, all at once, so the whole
file stays quick.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEADER = "student_id,name,email,group,region\n"
GOOD_ROSTER = HEADER + "ana,Ana,,,\nbruno,Bruno,,,\n"
GOOD_CONFIG = 'session = "lab-2026"\nregions = ["eu-west-1", "us-east-1"]\n'


@dataclass
class Case:
    files: dict[str, str | bytes]
    args: list[str]
    says: list[str]  # each must appear in stderr (whitespace-normalised)
    code: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)


def roster_case(body: str | bytes, *says: str) -> Case:
    return Case({"labkit.toml": GOOD_CONFIG, "roster.csv": body}, ["roster.csv"], list(says))


def config_case(toml: str, *says: str, args: tuple[str, ...] = ()) -> Case:
    return Case({"labkit.toml": toml, "roster.csv": GOOD_ROSTER}, [*args, "roster.csv"],
                list(says))


CASES: dict[str, Case] = {
    # -- roster --------------------------------------------------------------------------
    "empty roster": roster_case("", "roster.csv: the roster is empty", "add a header row"),
    "no header": roster_case("ana,Ana,ana@example.edu,,\nbruno,Bruno,,,\n",
                             "roster.csv:1:", "'student_id'", "must be a header"),
    "no student_id column": roster_case("id,name\nana,Ana\n", "roster.csv:1:",
                                        "'student_id'", "rename the column 'id' to student_id"),
    "empty student_id": roster_case(HEADER + "ana,,,,\n,Bruno,,,\n", "roster.csv:3:",
                                    "empty student_id", "every row needs"),
    "duplicate student_id": roster_case(HEADER + "ana,,,,\nbruno,,,,\nana,,,,\n",
                                        "roster.csv:4:", "'ana'", "line 2",
                                        "their own id"),
    "id with a space": roster_case(HEADER + "ana,,,,\nana silva,,,,\n", "roster.csv:3:",
                                   "'ana silva'", "space", "use a-z, 0-9"),
    "id with a quote": roster_case(HEADER + "ana,,,,\nana'x,,,,\n", "roster.csv:3:",
                                   "quote", "use a-z, 0-9"),
    "id with ;": roster_case(HEADER + "ana,,,,\nana;reboot,,,,\n", "roster.csv:3:",
                             "'ana;reboot'", "shell character", "use a-z, 0-9"),
    "id with $()": roster_case(HEADER + "ana,,,,\n$(reboot),,,,\n", "roster.csv:3:",
                               "'$(reboot)'", "shell character", "use a-z, 0-9"),
    "id with backticks": roster_case(HEADER + "ana,,,,\n`reboot`,,,,\n", "roster.csv:3:",
                                     "'`reboot`'", "shell character", "use a-z, 0-9"),
    "non-ASCII id": roster_case(HEADER + "ana,,,,\njoão,João,,,\n", "roster.csv:3:",
                                "'joão'", "non-ASCII", "write it as 'joao'"),
    "upper-case id": roster_case(HEADER + "ana,,,,\nBruno,,,,\n", "roster.csv:3:",
                                 "upper-case", "write it as 'bruno'"),
    "id with a leading -": roster_case(HEADER + "ana,,,,\n-rf,,,,\n", "roster.csv:3:",
                                       "'-rf'", "starts with '-'", "use a-z, 0-9"),
    "invalid UTF-8": roster_case(HEADER.encode() + b"ana,,,,\nbruno,Bru\xe7o,,,\n",
                                 "roster.csv:3:", "not valid UTF-8", "CSV UTF-8"),
    "group pinned to two regions": roster_case(
        HEADER + "ana,,,team-a,eu-west-1\nbruno,,,team-a,us-east-1\n", "roster.csv:3:",
        "team-a", "line 2", "give its members one region"),
    "unknown region": roster_case(HEADER + "ana,,,,eu-west-l\n", "roster.csv:2:",
                                  "'eu-west-l'", "did you mean 'eu-west-1'?"),
    "unquoted comma": roster_case("student_id,name\nana,Ana\nbruno,Costa, Bruno\n",
                                  "roster.csv:3:", "3 fields", "double quotes"),
    "roster not found": Case({"labkit.toml": GOOD_CONFIG}, ["nope.csv"],
                             ["nope.csv", "not found", "labkit init"]),
    # -- config --------------------------------------------------------------------------
    "invalid session": config_case('session = "Big Data"\n', "labkit.toml:1: session:",
                                   "'Big Data'", "use a-z, 0-9 and '-'"),
    "missing session": config_case('regions = ["eu-west-1"]\n', "labkit.toml: session:",
                                   "missing", 'session = "hadoop-2026"'),
    "invalid --session": config_case(GOOD_CONFIG, "--session:", "'Big Data'", "use a-z",
                                     args=("--session", "Big Data")),
    "unknown key": config_case(GOOD_CONFIG + 'instance_typ = "t3.micro"\n',
                               "labkit.toml:3: instance_typ:", "unknown key",
                               "did you mean 'instance_type'?"),
    "unknown key in [emr]": config_case(GOOD_CONFIG + '[emr]\nmod = "none"\n',
                                        "labkit.toml:4: emr.mod:", "unknown key",
                                        "did you mean 'mode'?"),
    "unknown section": config_case(GOOD_CONFIG + "[bootstap]\ncommands = []\n",
                                   "labkit.toml:3: bootstap:", "unknown section",
                                   "did you mean [bootstrap]?"),
    "string for a number": config_case(GOOD_CONFIG + 'parallel = "32"\n',
                                       "labkit.toml:3: parallel:", "whole number",
                                       "parallel = 32"),
    "string for a list": config_case('session = "s"\nregions = "eu-west-1"\n',
                                     "labkit.toml:2: regions:", "must be a list",
                                     'regions = ["eu-west-1", "us-east-1"]'),
    "bool for a number": config_case(GOOD_CONFIG + "[emr]\ninstance_count = true\n",
                                     "labkit.toml:4: emr.instance_count:", "whole number",
                                     "instance_count = 3"),
    "unknown region in regions": config_case('session = "s"\nregions = ["eu-west-l"]\n',
                                             "labkit.toml:2: regions:", "'eu-west-l'",
                                             "did you mean 'eu-west-1'?"),
    "bad choice": config_case(GOOD_CONFIG + '[emr]\nmode = "big"\n',
                              "labkit.toml:4: emr.mode:", "per-seat, shared, none",
                              'mode = "per-seat"'),
    "TOML syntax error": config_case('session = "s"\nparallel = 8\nregions = [eu-west-1]\n',
                                     "labkit.toml:3:", "not valid TOML", "double quotes"),
    "missing -c file": config_case(GOOD_CONFIG, "other.toml", "not found", "labkit init",
                                   args=("-c", "other.toml")),
    "materials missing": config_case(GOOD_CONFIG + '[bootstrap]\nmaterials = "week1.tar.gz"\n',
                                     "labkit.toml:4: bootstrap.materials:", "week1.tar.gz",
                                     "remove the line"),
}


def run_plan(folder: Path, args: list[str], env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labkit", "plan", "--offline", *args],
                          cwd=folder, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def setup(folder: Path, files: dict[str, str | bytes]) -> None:
    folder.mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content, encoding="utf-8")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    base = tmp_path_factory.mktemp("cli-input")
    folders = {}
    for i, (name, case) in enumerate(CASES.items()):
        folders[name] = base / f"case{i}"
        setup(folders[name], case.files)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        done = dict(zip(CASES, pool.map(
            lambda n: run_plan(folders[n], CASES[n].args, CASES[n].extra_env), CASES)))
    return {name: (folders[name], done[name]) for name in CASES}


def flat(text: str) -> str:
    """Messages may be wrapped to the terminal width; compare words, not line breaks."""
    return " ".join(text.split())


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_plainly_and_creates_nothing(
        name: str, outcomes: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]) -> None:
    folder, result = outcomes[name]
    case = CASES[name]
    assert result.returncode == case.code, result.stderr
    said = flat(result.stderr)
    assert said.startswith("labkit: "), result.stderr
    for words in case.says:
        assert flat(words) in said, f"{words!r} not in {result.stderr!r}"
    assert "Traceback" not in result.stderr + result.stdout
    assert "unexpected error" not in said
    # nothing created: no labkit-<session>/ folder, no file of any kind
    assert sorted(p.name for p in folder.iterdir()) == sorted(case.files)


def test_verbose_shows_the_traceback_as_well_as_the_message(tmp_path: Path) -> None:
    setup(tmp_path / "quiet", {"roster.csv": HEADER + "Ana,,,,\n"})
    setup(tmp_path / "loud", {"roster.csv": HEADER + "Ana,,,,\n"})
    quiet = run_plan(tmp_path / "quiet", ["roster.csv"])
    loud = run_plan(tmp_path / "loud", ["-v", "roster.csv"])
    assert quiet.returncode == loud.returncode == 2
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert "roster.csv:2:" in loud.stderr
    assert len(loud.stderr) > len(quiet.stderr)
    assert sorted(p.name for p in (tmp_path / "loud").iterdir()) == ["roster.csv"]


def test_a_long_path_is_printed_whole_so_it_can_be_copied(tmp_path: Path) -> None:
    deep = tmp_path / ("course-materials-" * 3) / "2026-spring-semester-section-b"
    setup(deep, {"roster.csv": GOOD_ROSTER})
    missing = deep / "labkit.toml"
    result = run_plan(deep, ["-c", str(missing), "roster.csv"], env={"COLUMNS": "80"})
    assert result.returncode == 2
    assert str(missing) in result.stderr


def test_the_example_roster_plans_seven_seats_one_pinned_to_us_east_1(tmp_path: Path) -> None:
    setup(tmp_path / "class", {})
    shutil.copy(REPO / "roster.csv.example", tmp_path / "class" / "roster.csv")
    result = run_plan(tmp_path / "class", ["roster.csv"], env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "8 students in 7 seats" in out
    # the seats-per-region table: region | seats | pinned | room (defaults: eu-west-1, us-east-1)
    table = out.split("seats per region", 1)[1].split("will be created", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"[^\w\s.()-]", line)][1:4]
        if cells and re.fullmatch(r"[a-z]{2}-[a-z]+-\d", cells[0]):
            rows[cells[0]] = tuple(cells[1:3])
    assert rows == {"eu-west-1": ("6", ""), "us-east-1": ("1", "1")}, table
    assert "nothing was created" in out
    assert sorted(p.name for p in (tmp_path / "class").iterdir()) == ["roster.csv"]
