"""roster.csv -> students -> seats.

A seat is one machine (and, with EMR, one cluster). Students with the same ``group``
share a seat named after the group; everyone else gets a seat named after their
``student_id``. Every value that later becomes a tag, a host alias or a file name is
checked here against a strict alphabet, so roster text can never reach a shell.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from labkit import regions as known_regions
from labkit.errors import InputError

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ID_RULE = "use a-z, 0-9, '.', '_' and '-' only (start with a letter or digit, at most 63)"
MAX_PROBLEMS_SHOWN = 12


@dataclass(frozen=True)
class Student:
    student_id: str
    name: str
    email: str
    group: str
    region: str
    line: int


@dataclass(frozen=True)
class Seat:
    name: str
    students: tuple[Student, ...]
    region: str  # pinned region, "" when free to place

    @property
    def line(self) -> int:
        return self.students[0].line


@dataclass(frozen=True)
class Roster:
    path: str
    students: tuple[Student, ...]
    seats: tuple[Seat, ...]


class RosterError(InputError):
    """Every problem found in one roster, so the instructor fixes them in one pass."""

    def __init__(self, path: str, problems: list[tuple[int | None, str, str]]) -> None:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        lines = []
        for line, message, hint in shown:
            where = f"{path}:{line}" if line is not None else path
            lines.append(f"{where}: {message}" + (f" ({hint})" if hint else ""))
        if len(problems) > len(shown):
            lines.append(f"... and {len(problems) - len(shown)} more problems")
        super().__init__("\n".join(lines))
        self.message = "\n".join(lines)
        self.problems = problems


def _describe_bad_id(value: str) -> str:
    if value != value.strip() or " " in value:
        return "contains a space"
    if any(c in value for c in "'\"`"):
        return "contains a quote"
    if any(c in value for c in ";$&|<>(){}\\"):
        return "contains a shell character"
    if any(ord(c) > 127 for c in value):
        return "contains a non-ASCII letter"
    if value.lower() != value:
        return "contains an upper-case letter"
    if len(value) > 63:
        return "is longer than 63 characters"
    return "has a character that is not allowed"


def load_roster(path: Path) -> Roster:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("roster file not found", path=str(path),
                         hint="give the path of your roster.csv; `labkit init` writes an example"
                         ) from None
    except OSError as e:
        raise InputError(f"cannot read roster: {e.strerror}", path=str(path)) from None
    return parse_roster(raw, str(path))


def parse_roster(raw: bytes, path: str = "roster.csv") -> Roster:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError("not valid UTF-8 text", path=path, line=line,
                         hint="save the roster as 'CSV UTF-8' in your spreadsheet program"
                         ) from None
    if not text.strip():
        raise InputError("the roster is empty", path=path,
                         hint="add a header row (student_id,name,email,group,region) "
                              "and one row per student")

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as e:
        raise InputError(f"cannot read the header: {e}", path=path, line=1) from None
    columns = [h.strip().lower() for h in header]
    if "student_id" not in columns:
        looks_like_data = any(ID_RE.fullmatch(h.strip()) and h.strip() not in
                              ("name", "email", "group", "region") for h in header)
        raise InputError(
            "no 'student_id' column in the header row", path=path, line=1,
            hint=("the first row must be a header such as student_id,name,email,group,region"
                  if looks_like_data or not header else
                  "name one column student_id (the other columns are optional)"))
    for i, name in enumerate(columns):
        if name and columns.index(name) != i:
            raise InputError(f"the column {name!r} appears twice", path=path, line=1,
                             hint="keep one of them")
    col = {name: i for i, name in enumerate(columns) if name}

    problems: list[tuple[int | None, str, str]] = []
    students: list[Student] = []
    seen: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                problems.append((line, f"{len(row)} fields but the header has {len(header)}",
                                 "a name with a comma must be in \"double quotes\""))
                continue

            def cell(name: str) -> str:
                i = col.get(name)
                return row[i].strip() if i is not None and i < len(row) else ""

            sid_raw = row[col["student_id"]] if col["student_id"] < len(row) else ""
            sid = sid_raw.strip()
            if not sid:
                problems.append((line, "empty student_id", "every row needs a student_id"))
                continue
            if not ID_RE.fullmatch(sid_raw):
                problems.append((line, f"student_id {sid_raw!r} {_describe_bad_id(sid_raw)}",
                                 ID_RULE))
                continue
            if sid in seen:
                problems.append((line, f"student_id {sid!r} is already used on line "
                                       f"{seen[sid]}", "every student needs their own id"))
                continue
            seen[sid] = line
            group_raw = cell("group")
            if group_raw and not ID_RE.fullmatch(group_raw):
                problems.append((line, f"group {group_raw!r} {_describe_bad_id(group_raw)}",
                                 ID_RULE))
                continue
            region = cell("region")
            if region and not known_regions.is_known(region):
                problems.append((line, f"unknown region {region!r}",
                                 known_regions.suggest(region)))
                continue
            name = cell("name")
            email = cell("email")
            if email and not re.match(r"^[^@\s]+@[^@\s]+$", email):
                problems.append((line, f"email {email!r} does not look like an address",
                                 "fix it or leave the cell empty"))
                continue
            if any(ord(c) < 32 for c in name + email):
                problems.append((line, "a control character in name or email",
                                 "remove it"))
                continue
            students.append(Student(sid, name, email, group_raw, region, line))
    except csv.Error as e:
        problems.append((reader.line_num, f"the CSV cannot be read here: {e}",
                         "check for an unclosed \"quote\""))

    seats: list[Seat] = []
    if not problems:
        seats = _seats(students, problems)
    if not problems and not students:
        problems.append((None, "the roster has a header but no students", "add one row per student"))
    if problems:
        raise RosterError(path, problems)
    return Roster(path=path, students=tuple(students), seats=tuple(seats))


def _seats(students: list[Student], problems: list[tuple[int | None, str, str]]) -> list[Seat]:
    order: list[str] = []
    members: dict[str, list[Student]] = {}
    solo_ids = {s.student_id for s in students if not s.group}
    for s in students:
        name = s.group or s.student_id
        if s.group and s.group in solo_ids:
            problems.append((s.line, f"group {s.group!r} has the same name as a student "
                                     "without a group, and seats are named after both",
                             "rename the group"))
            continue
        if name not in members:
            members[name] = []
            order.append(name)
        members[name].append(s)
    seats = []
    for name in order:
        group = members[name]
        pinned = {s.region for s in group if s.region}
        if len(pinned) > 1:
            first = next(s for s in group if s.region)
            other = next(s for s in group if s.region and s.region != first.region)
            problems.append((other.line, f"group {name!r} is pinned to {first.region} on line "
                                         f"{first.line} but to {other.region} here",
                             "a group shares one machine: give its members one region"))
            continue
        seats.append(Seat(name=name, students=tuple(group), region=pinned.pop() if pinned else ""))
    return seats
