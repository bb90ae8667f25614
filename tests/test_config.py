"""labkit.toml -> settings, through labkit's own functions: every mistake names the file,
the key (and its line when the file has one) and what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.config import OPTIONS, default_config, load_config, starter_toml
from labkit.errors import InputError

REPO = Path(__file__).resolve().parent.parent


def refused(tmp_path: Path, text: str, **kwargs: str) -> InputError:
    path = tmp_path / "labkit.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_config(path, **kwargs)
    return caught.value


# (case, labkit.toml text, key named, line named, words in the hint)
BAD = [
    ("invalid session", 'session = "Hadoop Class"\n', "session", 1, "a-z, 0-9"),
    ("session too long", f'session = "{"a" * 33}"\n', "session", 1, "at most 32"),
    ("session ends in -", 'session = "class-"\n', "session", 1, "ending with a letter"),
    ("missing session", 'regions = ["eu-west-1"]\n', "session", None, "session = "),
    ("unknown key", 'session = "s"\ninstance_typ = "t3.micro"\n', "instance_typ", 2,
     "did you mean 'instance_type'?"),
    ("unknown key in a section", 'session = "s"\n\n[emr]\nmod = "none"\n', "emr.mod", 4,
     "did you mean 'mode'?"),
    ("unknown section", 'session = "s"\n\n[bootstap]\ncommands = []\n', "bootstap", 3,
     "did you mean [bootstrap]?"),
    ("unknown section, nothing close", 'session = "s"\n[network]\nvpc = "x"\n', "network", 2,
     "valid sections: images, bootstrap, emr, budget"),
    ("string for a number", 'session = "s"\nparallel = "32"\n', "parallel", 2,
     "parallel = 32"),
    ("string for a list", 'session = "s"\nregions = "eu-west-1"\n', "regions", 2,
     'regions = ["eu-west-1", "us-east-1"]'),
    ("bool for a number", 'session = "s"\nparallel = true\n', "parallel", 2, "parallel = 32"),
    ("bool for a float", 'session = "s"\n[budget]\nmax_hourly_usd = false\n',
     "budget.max_hourly_usd", 3, "max_hourly_usd = 100.0"),
    ("float for a whole number", 'session = "s"\n[emr]\ninstance_count = 2.5\n',
     "emr.instance_count", 3, "instance_count = 3"),
    ("number in a list of strings", 'session = "s"\nregions = ["eu-west-1", 2]\n', "regions",
     2, "regions = ["),
    ("unknown region", 'session = "s"\nregions = ["eu-west-1", "eu-west-l"]\n', "regions", 2,
     "did you mean 'eu-west-1'?"),
    ("no region", 'session = "s"\nregions = []\n', "regions", 2, "regions = ["),
    ("bad choice", 'session = "s"\n[emr]\nmode = "big"\n', "emr.mode", 3, 'mode = "per-seat"'),
    ("near choice", 'session = "s"\n[emr]\nmode = "per_seat"\n', "emr.mode", 3,
     'did you mean "per-seat"?'),
    ("out of range", 'session = "s"\nparallel = 0\n', "parallel", 2, "the default is 32"),
    ("images region typo", 'session = "s"\n[images]\neu-west-l = "ami-0123456789abcdef0"\n',
     "images.eu-west-l", 3, "did you mean 'eu-west-1'?"),
    ("list of tables", 'session = "s"\n[[emr]]\nmode = "none"\n', "emr", 2, "[emr]"),
]


@pytest.mark.parametrize("case,text,key,line,hint", BAD, ids=[b[0] for b in BAD])
def test_a_bad_config_names_file_key_line_and_fix(tmp_path: Path, case: str, text: str,
                                                  key: str, line: int | None,
                                                  hint: str) -> None:
    e = refused(tmp_path, text)
    assert e.path == str(tmp_path / "labkit.toml")
    assert e.key == key
    assert e.line == line
    assert hint in e.hint
    where = f"{e.path}:{line}: {key}: " if line else f"{e.path}: {key}: "
    assert str(e).startswith(where)


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    e = refused(tmp_path, 'session = "s"\nparallel = 8\nregions = [eu-west-1]\n')
    assert e.line == 3
    assert "not valid TOML" in e.message
    assert "double quotes" in e.hint


def test_an_unclosed_string_names_its_line(tmp_path: Path) -> None:
    e = refused(tmp_path, 'session = "s"\n\n\ncourse_title = "Big Data\n')
    assert e.line == 4


def test_a_config_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "labkit.toml"
    path.write_bytes(b'session = "s"\ncourse_title = "Ci\xeancia"\n')
    with pytest.raises(InputError) as caught:
        load_config(path)
    assert caught.value.line == 2
    assert "UTF-8" in str(caught.value)


def test_a_missing_config_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_config(tmp_path / "other.toml")
    assert caught.value.path == str(tmp_path / "other.toml")
    assert "not found" in caught.value.message
    assert "labkit init" in caught.value.hint


def test_a_materials_archive_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    e = refused(tmp_path, 'session = "s"\n[bootstrap]\nmaterials = "week1.tar.gz"\n')
    assert e.key == "bootstrap.materials" and e.line == 3
    assert str(tmp_path / "week1.tar.gz") in e.message  # resolved next to labkit.toml
    assert e.hint


def test_materials_are_found_next_to_the_config_not_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "week1.tar.gz").write_bytes(b"x")
    (tmp_path / "labkit.toml").write_text('session = "s"\n[bootstrap]\nmaterials = "week1.tar.gz"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(tmp_path / "labkit.toml")
    assert config.resolve_path(config.bootstrap.materials) == tmp_path / "week1.tar.gz"


def test_a_bad_session_from_the_command_line_is_blamed_on_the_option(tmp_path: Path) -> None:
    e = refused(tmp_path, 'session = "fine"\n', session_override="Not Fine")
    assert e.key == "--session"
    assert "labkit.toml" not in str(e)  # the file is right; the option is not
    with pytest.raises(InputError) as caught:
        default_config("Not Fine")
    assert caught.value.key == "--session"


def test_the_session_option_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "labkit.toml").write_text('session = "from-file"\n')
    assert load_config(tmp_path / "labkit.toml", session_override="from-cli").session == "from-cli"


def test_a_bom_is_fine_and_values_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "labkit.toml"
    path.write_bytes(b'\xef\xbb\xbfsession = "s"\nparallel = 8\n'
                     b'regions = ["us-east-1", "eu-west-1"]\n[budget]\nmax_hourly_usd = 20\n')
    config = load_config(path)
    assert config.parallel == 8
    assert config.regions == ("us-east-1", "eu-west-1")
    assert config.budget.max_hourly_usd == 20.0 and isinstance(config.budget.max_hourly_usd,
                                                                float)
    assert config.emr.mode == "per-seat"  # untouched keys keep their defaults


def test_the_shipped_example_and_the_init_starter_load(tmp_path: Path) -> None:
    example = load_config(REPO / "labkit.toml.example")
    assert example.session == "lxmls-2026"
    assert example.regions == ("eu-west-1", "us-east-1", "sa-east-1")
    path = tmp_path / "labkit.toml"
    path.write_text(starter_toml("my-class"))
    started = load_config(path)
    assert started.session == "my-class"
    # every option in the table appears in the starter, so `init` documents them all
    text = path.read_text()
    for opt in OPTIONS:
        if opt.key != "*":
            assert f"\n{opt.key} = " in text, opt.dotted
