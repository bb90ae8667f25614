"""roster.csv -> students -> seats.

A seat is one machine (and, with EMR, one cluster). Students with the same ``group``
share a seat named after the group; everyone else gets a seat named after their
``student_id``. Every value that later becomes a tag, a host alias or a file name is
checked here against a strict alphabet, so roster text can never reach a shell.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from labkit import regions as known_regions
from labkit.errors import InputError

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ID_RULE = "use a-z, 0-9, '.', '_' and '-' only (start with a letter or digit, at most 63)"
MAX_PROBLEMS_SHOWN = 12
SHELL_CHARACTERS = ";$&|<>(){}[]*?!~#`\\"
# An e-mail address as class lists carry them: letters (any script), digits and ._%+- before
# the @, and a dotted domain. Stricter than RFC 5322 on purpose: quotes, spaces and shell
# characters are legal there but never in a real class list, and the address is printed
# and sent to AWS (billing alarms).
EMAIL_RE = re.compile(r"^[\w.%+-]+@[\w-]+(\.[\w-]+)+$")


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
            lines.append(f"{where}: {message}" + (f"\n  {hint}" if hint else ""))
        if len(problems) > len(shown):
            lines.append(f"... and {len(problems) - len(shown)} more problems")
        super().__init__("\n".join(lines))
        self.message = "\n".join(lines)
        self.problems = problems
        self.path = path
        self.line = problems[0][0] if problems else None


def _describe_bad_id(value: str) -> str:
    if any(c.isspace() for c in value):
        return "contains a space"
    if any(c in value for c in "'\""):
        return "contains a quote"
    if any(c in value for c in SHELL_CHARACTERS):
        return "contains a shell character"
    if any(ord(c) > 127 for c in value):
        return "contains a non-ASCII letter"
    if value.lower() != value:
        return "contains an upper-case letter"
    if len(value) > 63:
        return "is longer than 63 characters"
    if value[:1] in ("-", ".", "_"):
        return f"starts with {value[0]!r}"
    return "has a character that is not allowed"


def _id_hint(value: str) -> str:
    """ID_RULE, plus the fixed spelling when lower-casing or dropping accents is all it takes."""
    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower()
    if plain != value and ID_RE.fullmatch(plain):
        return f"write it as {plain!r}; {ID_RULE}"
    return ID_RULE


def _missing_id_hint(header: list[str]) -> str:
    """Tell a first row of data from a header whose id column has another name."""
    columns = [h.strip().lower() for h in header]
    if not set(columns) & {"name", "email", "group", "region"}:
        return "the first row must be a header such as student_id,name,email,group,region"
    near = difflib.get_close_matches("student_id", columns, n=1, cutoff=0.6) or [
        c for c in columns if c in ("id", "login", "username", "user", "number", "student")]
    if near:
        return f"rename the column {header[columns.index(near[0])].strip()!r} to student_id"
    return "name one column student_id (the other columns are optional)"


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


def _line_count(text: str) -> int:
    """Lines as the csv module and editors count them: \\n, \\r\\n or a lone \\r ends one."""
    return len(re.findall(r"\r\n|\r|\n", text))


def _delimiter(first_line: str) -> str:
    """',' unless the header clearly uses ';' or a tab (spreadsheets in many locales)."""
    if "," in first_line or "student_id" not in first_line.lower():
        return ","
    for candidate in (";", "\t"):
        if candidate in first_line:
            return candidate
    return ","


def parse_roster(raw: bytes, path: str = "roster.csv") -> Roster:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = raw[: e.start].decode("utf-8-sig", errors="replace")
        raise InputError("not valid UTF-8 text", path=path, line=_line_count(before) + 1,
                         hint="save the roster as 'CSV UTF-8' in your spreadsheet program"
                         ) from None
    if not text.strip():
        raise InputError("the roster is empty", path=path,
                         hint="add a header row (student_id,name,email,group,region) "
                              "and one row per student")

    first_line = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line))
    try:
        header = next(reader)
    except csv.Error as e:
        raise InputError(f"cannot read the header: {e}", path=path, line=1) from None
    columns = [h.strip().lower() for h in header]
    if "student_id" not in columns:
        raise InputError("no 'student_id' column in the header row", path=path, line=1,
                         hint=_missing_id_hint(header))
    for i, name in enumerate(columns):
        if name and columns.index(name) != i:
            raise InputError(f"the column {name!r} appears twice", path=path, line=1,
                             hint="keep one of them")
    col = {name: i for i, name in enumerate(columns) if name}

    problems: list[tuple[int | None, str, str]] = []
    students: list[Student] = []
    seen: dict[str, int] = {}

    def cell(row: list[str], name: str) -> str:
        i = col.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    end = reader.line_num
    try:
        for row in reader:
            # A quoted cell may span lines; a message points at the line the row starts on.
            line, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                problems.append((line, f"{len(row)} fields but the header has {len(header)}",
                                 "a name with a comma must be in \"double quotes\""))
                continue
            if any("\n" in c or "\r" in c for c in row):
                problems.append((line, f"a cell runs on from line {line} to line {end}",
                                 "check for an unclosed \"quote\" (a cell cannot hold a "
                                 "line break)"))
                continue

            # Spaces around a cell are invisible in a spreadsheet, so they are dropped;
            # a space inside an id is not.
            sid = cell(row, "student_id")
            if not sid:
                problems.append((line, "empty student_id", "every row needs a student_id"))
                continue
            if not ID_RE.fullmatch(sid):
                problems.append((line, f"student_id {sid!r} {_describe_bad_id(sid)}",
                                 _id_hint(sid)))
                continue
            if sid in seen:
                problems.append((line, f"student_id {sid!r} is already used on line "
                                       f"{seen[sid]}", "every student needs their own id"))
                continue
            seen[sid] = line
            group_raw = cell(row, "group")
            if group_raw and not ID_RE.fullmatch(group_raw):
                problems.append((line, f"group {group_raw!r} {_describe_bad_id(group_raw)}",
                                 _id_hint(group_raw)))
                continue
            region = cell(row, "region")
            if region and not known_regions.is_known(region):
                problems.append((line, f"unknown region {region!r}",
                                 known_regions.suggest(region)))
                continue
            name = cell(row, "name")
            email = cell(row, "email")
            if any(ord(c) < 32 or ord(c) == 127 for c in name + email):
                problems.append((line, "a control character in name or email",
                                 "remove it"))
                continue
            if email and not EMAIL_RE.fullmatch(email):
                problems.append((line, f"email {email!r} does not look like an address",
                                 "fix it or leave the cell empty"))
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
