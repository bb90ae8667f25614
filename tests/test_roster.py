"""roster.csv -> students -> seats, through labkit's own functions.

Every bad roster must be refused with the line to fix and what to do; every roster that
is accepted must only carry identifiers that are safe in a tag, a host alias, a file name
and a shell command line. The same cases through the real command are in
test_cli_input.py.
"""

from __future__ import annotations

import csv
import io
import string
from pathlib import Path

import pytest

from labkit.errors import InputError
from labkit.roster import MAX_PROBLEMS_SHOWN, RosterError, load_roster, parse_roster

HEADER = "student_id,name,email,group,region\n"


def problems(raw: bytes | str) -> list[tuple[int | None, str, str]]:
    """(line, message, hint) for every problem labkit reports about this roster."""
    data = raw.encode() if isinstance(raw, str) else raw
    with pytest.raises(InputError) as caught:
        parse_roster(data, "roster.csv")
    e = caught.value
    if isinstance(e, RosterError):
        return e.problems
    return [(e.line, e.message, e.hint)]


def only_problem(raw: bytes | str) -> tuple[int | None, str, str]:
    found = problems(raw)
    assert len(found) == 1, found
    return found[0]


# -- refused, with the line and what to do ------------------------------------------------

def test_empty_file_is_refused_with_what_to_write() -> None:
    for raw in (b"", b"\n\n", b"   \r\n", b"\xef\xbb\xbf"):
        _, message, hint = only_problem(raw)
        assert "empty" in message
        assert "student_id" in hint


def test_a_header_without_students_is_refused() -> None:
    _, message, hint = only_problem("student_id,name\n\n")
    assert "no students" in message
    assert hint


def test_data_in_the_first_row_is_taken_for_a_missing_header() -> None:
    line, message, hint = only_problem("ana.silva,Ana Silva,ana@example.edu\n"
                                       "bruno,Bruno,bruno@example.edu\n")
    assert line == 1
    assert "student_id" in message
    assert "first row must be a header" in hint


@pytest.mark.parametrize("header,hint", [
    ("id,name", "rename the column 'id' to student_id"),
    ("Student ID,Email", "rename the column 'Student ID' to student_id"),
    ("nome,email", "name one column student_id"),
])
def test_a_header_without_student_id_says_which_column_to_name_so(header: str,
                                                                  hint: str) -> None:
    line, message, said = only_problem(f"{header}\nana,Ana\n")
    assert line == 1
    assert "'student_id'" in message
    assert hint in said


def test_an_empty_student_id_names_its_line() -> None:
    line, message, hint = only_problem(HEADER + "ana,Ana,,,\n,Bruno,,,\n")
    assert line == 3
    assert "empty student_id" in message
    assert hint


def test_a_duplicate_student_id_names_both_lines() -> None:
    line, message, hint = only_problem(HEADER + "ana,Ana,,,\nbruno,Bruno,,,\nana,Ana 2,,,\n")
    assert line == 4
    assert "'ana'" in message and "line 2" in message
    assert hint


BAD_IDS = {
    "ana silva": "space",
    "ana\tsilva": "space",
    "ana'x": "quote",
    'ana"x': "quote",
    "ana;rm": "shell",
    "$(reboot)": "shell",
    "`id`": "shell",
    "a|b": "shell",
    "a&b": "shell",
    "a>b": "shell",
    "a\\b": "shell",
    "a*": "shell",
    "joão": "non-ASCII",
    "Ana": "upper-case",
    "-rf": "starts with '-'",
    ".hidden": "starts with '.'",
    "a" * 64: "longer than 63",
    "a/b": "not allowed",
}


@pytest.mark.parametrize("bad", list(BAD_IDS), ids=repr)
def test_a_bad_student_id_is_refused_on_its_line_with_the_rule(bad: str) -> None:
    rows = [["ana", "Ana", "", "", ""], [bad, "X", "", "", ""]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([HEADER.strip().split(",")] + rows)
    line, message, hint = only_problem(out.getvalue())
    assert line == 3
    assert repr(bad) in message
    assert BAD_IDS[bad] in message
    assert "a-z, 0-9" in hint


def test_a_fixable_id_is_spelled_out_in_the_hint() -> None:
    assert "'ana'" in only_problem(HEADER + "Ana,,,,\n")[2]
    assert "'joao'" in only_problem(HEADER + "joão,,,,\n")[2]


@pytest.mark.parametrize("bad", ["Team A", "$(id)", "-x"])
def test_a_bad_group_name_is_refused_too(bad: str) -> None:
    line, message, hint = only_problem(HEADER + f'ana,Ana,,"{bad}",\n')
    assert line == 2
    assert "group" in message and repr(bad) in message
    assert "a-z, 0-9" in hint


def test_invalid_utf8_names_the_line_and_how_to_save() -> None:
    raw = HEADER.encode() + b"ana,Ana,,,\r\nbruno,Bru\xe7o,,,\r\n"  # latin-1 'ç'
    line, message, hint = only_problem(raw)
    assert line == 3
    assert "UTF-8" in message
    assert "CSV UTF-8" in hint


def test_a_group_whose_members_pin_different_regions_is_refused() -> None:
    line, message, hint = only_problem(HEADER + "ana,,,team-a,eu-west-1\n"
                                                "bruno,,,,\n"
                                                "carla,,,team-a,us-east-1\n")
    assert line == 4
    assert "team-a" in message and "line 2" in message
    assert "eu-west-1" in message and "us-east-1" in message
    assert "one region" in hint


def test_an_unknown_region_suggests_the_region_meant() -> None:
    line, message, hint = only_problem(HEADER + "ana,,,,eu-west-l\n")
    assert line == 2
    assert "'eu-west-l'" in message
    assert hint == "did you mean 'eu-west-1'?"


def test_an_unquoted_comma_in_a_name_is_refused_with_how_to_quote() -> None:
    line, message, hint = only_problem("student_id,name,email\nana,Silva, Ana,ana@example.edu\n")
    assert line == 2
    assert "4 fields" in message and "3" in message
    assert "double quotes" in hint


def test_an_unclosed_quote_points_at_the_line_it_opens_on() -> None:
    line, _, hint = only_problem(HEADER + 'ana,"Ana,,,\nbruno,Bruno,,,\ncarla,,,,\n')
    assert line == 2
    assert "quote" in hint


@pytest.mark.parametrize("email", ["ana@example.edu;reboot", "$(id)@example.edu",
                                   "ana silva@example.edu", "ana", "`id`@x.org"])
def test_an_email_that_is_not_an_address_is_refused(email: str) -> None:
    line, message, _ = only_problem(f'student_id,email\nana,"{email}"\n')
    assert line == 2
    assert "email" in message


def test_a_control_character_in_a_name_is_refused() -> None:
    line, message, _ = only_problem("student_id,name\nana,Ana\x1b[31m\n")
    assert line == 2
    assert "control character" in message


def test_every_problem_is_reported_in_one_pass() -> None:
    found = problems(HEADER + "Ana,,,,\nbruno,,,,\n,Nobody,,,\nbruno,,,,\ncarla,,,,mars-1\n")
    assert [line for line, _, _ in found] == [2, 4, 5, 6]


def test_a_long_list_of_problems_is_cut_short_and_counted() -> None:
    raw = HEADER + "".join(f"Bad{i},,,,\n" for i in range(MAX_PROBLEMS_SHOWN + 5))
    with pytest.raises(RosterError) as caught:
        parse_roster(raw.encode(), "roster.csv")
    text = str(caught.value)
    assert text.count("roster.csv:") == MAX_PROBLEMS_SHOWN
    assert "and 5 more problems" in text


def test_a_missing_roster_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_roster(tmp_path / "nope.csv")
    assert "nope.csv" in str(caught.value) and "not found" in str(caught.value)
    assert caught.value.hint


def test_load_roster_names_the_file_it_read(tmp_path: Path) -> None:
    path = tmp_path / "class-b.csv"
    path.write_text(HEADER + "ana,,,,\nana,,,,\n")
    with pytest.raises(InputError) as caught:
        load_roster(path)
    assert str(caught.value).startswith(f"{path}:3: ")


# -- accepted ---------------------------------------------------------------------------

def test_a_bom_crlf_blank_lines_and_a_quoted_comma_are_all_fine() -> None:
    raw = ("\ufeff" + HEADER.replace("\n", "\r\n")
           + "\r\n"
           + 'ana.silva,"Silva, Ana",ana@example.edu,,\r\n'
           + "\r\n\r\n"
           + "bruno_c,Bruno,,,\r\n").encode()
    roster = parse_roster(raw, "roster.csv")
    assert [s.student_id for s in roster.students] == ["ana.silva", "bruno_c"]
    assert roster.students[0].name == "Silva, Ana"
    assert roster.students[0].email == "ana@example.edu"
    # lines are counted the way an editor shows them, blank lines included
    assert [s.line for s in roster.students] == [3, 6]


def test_line_numbers_stay_right_after_blank_lines_crlf_and_a_cell_over_two_lines() -> None:
    raw = HEADER + 'ana,,,,\r\nbruno,"Bru\r\nno",,,\r\n\r\nana,,,,\r\n'
    found = problems(raw)
    assert [line for line, _, _ in found] == [3, 6]
    assert "line 3 to line 4" in found[0][1]
    assert "line 2" in found[1][1]


def test_spaces_around_a_cell_are_dropped_and_column_names_are_case_blind() -> None:
    roster = parse_roster(b"Student_ID , Name,Region\n  ana  , Ana Silva , us-east-1 \n")
    (student,) = roster.students
    assert (student.student_id, student.name, student.region) == ("ana", "Ana Silva",
                                                                  "us-east-1")


def test_a_semicolon_separated_export_is_read() -> None:
    roster = parse_roster(b"student_id;name;group\nana;Silva, Ana;t1\nbruno;Bruno;t1\n")
    assert [s.name for s in roster.students] == ["Silva, Ana", "Bruno"]
    assert [s.name for s in roster.seats] == ["t1"]


def test_other_columns_are_kept_out_of_the_way() -> None:
    roster = parse_roster(b"student_id,shoe_size,notes\nana,38,likes $(rm -rf)\n")
    assert [s.student_id for s in roster.students] == ["ana"]


def test_group_members_share_one_seat_named_after_the_group_in_roster_order() -> None:
    roster = parse_roster((HEADER
                           + "ana,,,,\n"
                           + "carla,,,team-a,\n"
                           + "bruno,,,,\n"
                           + "duarte,,,team-a,us-east-1\n").encode())
    assert [s.name for s in roster.seats] == ["ana", "team-a", "bruno"]
    team = roster.seats[1]
    assert [s.student_id for s in team.students] == ["carla", "duarte"]
    assert team.region == "us-east-1"  # one member's pin pins the whole seat
    assert team.line == 3


def test_a_group_named_like_a_student_without_a_group_is_refused() -> None:
    line, _, hint = only_problem(HEADER + "ana,,,,\nbruno,,,ana,\n")
    assert line == 3
    assert "rename" in hint


def test_the_shipped_example_roster_reads_as_eight_students_in_seven_seats() -> None:
    path = Path(__file__).resolve().parent.parent / "roster.csv.example"
    roster = load_roster(path)
    assert len(roster.students) == 8
    assert len(roster.seats) == 7
    assert {s.name: s.region for s in roster.seats if s.region} == {"eva.martins": "us-east-1"}


# -- the security property --------------------------------------------------------------

# What may appear in a student_id, group, region or seat name: these become EC2/IAM tags,
# host aliases in ssh_config, file names and words on a command line.
SAFE = set(string.ascii_lowercase + string.digits + "._-")
SHELL_META = set(" \t\r\n\x0b\x0c'\"`$;&|<>()[]{}*?!~#\\=%^,:@+/") | {"\x00"}
NASTY = [
    "$(reboot)", "`reboot`", "a;reboot", "a&&b", "a||b", "a|b", "a>b", "a<b", "a b",
    "a\tb", "a\nb", "'a'", '"a"', "a\\b", "${IFS}", "a*", "a?", "~root", "#a", "-rf",
    "--help", ".", "..", "../etc", "a/b", "a=b", "joão", "ａｂｃ", "a\u00a0b", "a\u2028b",
    "a\u200bb", "ANA", "a\x00b", "%0a", "!a", "{a,b}", "[a]", "ü", "ı", "ﬁ",
]

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - the tables below still run
    HAVE_HYPOTHESIS = False


def assert_accepted_values_are_safe(cells: list[str]) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(
        [["student_id", "name", "email", "group", "region"], cells])
    try:
        roster = parse_roster(out.getvalue().encode("utf-8"), "roster.csv")
    except InputError:
        return
    for student in roster.students:
        for value in (student.student_id, student.group, student.region):
            assert set(value) <= SAFE, value
            assert not value.startswith("-"), value
        assert not set(student.email) & (SHELL_META - {"@", "+", "%", "."}), student.email
        assert not any(ord(c) < 32 or ord(c) == 127 for c in student.name + student.email)
    for seat in roster.seats:
        assert set(seat.name) <= SAFE and not seat.name.startswith("-"), seat.name


@pytest.mark.parametrize("nasty", NASTY, ids=repr)
def test_no_nasty_string_survives_in_any_identifier(nasty: str) -> None:
    for cells in ([nasty, "n", "", "", ""], ["ana", "n", "", nasty, ""],
                  ["ana", "n", "", "", nasty], ["ana", "n", f"{nasty}@example.edu", "", ""],
                  [f"ana{nasty}", "", "", "", ""], [f"{nasty}ana", "", "", "", ""]):
        assert_accepted_values_are_safe(cells)
    # and the nasty id itself is refused, not quietly cleaned into something else
    with pytest.raises(InputError):
        parse_roster(("student_id\n" + csv_cell(nasty) + "\n").encode())


GOOD = {"student_id": "ana", "name": "Ana", "email": "ana@example.edu", "group": "t1",
        "region": "eu-west-1"}


@pytest.mark.parametrize("column", list(GOOD))
def test_no_ascii_character_anywhere_in_a_cell_survives_unless_safe(column: str) -> None:
    # Exhaustive over ASCII: every character, at the start, in the middle and at the end.
    for code in range(128):
        c = chr(code)
        for value in (f"{c}ab", f"a{c}b", f"ab{c}"):
            if column == "email":
                value = f"{value}@example.edu"
            assert_accepted_values_are_safe(list(dict(GOOD, **{column: value}).values()))


def csv_cell(value: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([value])  # quotes a cell with a line break
    return out.getvalue().removesuffix("\r\n")


if HAVE_HYPOTHESIS:
    # Mostly allowed characters, so that many examples pass validation and the property
    # is really exercised, with every kind of troublemaker mixed in.
    piece = st.one_of(st.sampled_from(sorted(SAFE)), st.sampled_from(sorted(SHELL_META)),
                      st.sampled_from(["A", "Z", "ã", "\u00a0", "\u2028", "\u200b", "ａ", "ı",
                                       "\x7f"]),
                      st.characters(codec="utf-8"))
    word = st.one_of(st.lists(piece, min_size=1, max_size=12).map("".join),
                     st.tuples(st.sampled_from("abc123"), st.lists(piece, max_size=10)).map(
                         lambda t: t[0] + "".join(t[1])))
    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(column=st.sampled_from(list(GOOD)), value=word, at=st.sampled_from(["", "@x.org"]))
    def test_property_whatever_validation_accepts_is_shell_safe(column: str, value: str,
                                                                  at: str) -> None:
        cells = dict(GOOD, **{column: value + (at if column == "email" else "")})
        assert_accepted_values_are_safe(list(cells.values()))
