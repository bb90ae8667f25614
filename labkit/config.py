"""labkit.toml -> typed settings.

One table of options (``OPTIONS``) is the single source for config keys, their types,
defaults and the text of ``labkit init``. Precedence, lowest first: the defaults below,
then ``labkit.toml``, then command-line options (``--session``).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import regions as known_regions
from labkit.errors import InputError

SESSION_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")

DEFAULT_IMAGE = (
    "ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
)


@dataclass(frozen=True)
class Option:
    section: str  # "" for top level
    key: str
    kind: type | tuple[type, ...]
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    item_kind: type | None = None  # for lists

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key


OPTIONS: tuple[Option, ...] = (
    Option("", "session", str, None, "required: a-z, 0-9, '-', at most 32 characters"),
    Option("", "regions", list, ["eu-west-1", "us-east-1"], "in order of preference",
           item_kind=str),
    Option("", "instance_type", str, "t3.medium", "one machine per seat"),
    Option("", "image", str, DEFAULT_IMAGE,
           "\"ssm:<parameter>\" resolved per region, or one \"ami-...\" for all"),
    Option("", "login_user", str, "ubuntu", "the image's default user; students log in as it"),
    Option("", "connect", str, "public", "public | private (with a ProxyJump in ssh_config)",
           choices=("public", "private")),
    Option("", "ssh_config", str, "",
           "optional OpenSSH client config, read afresh for every connection attempt"),
    Option("", "ssh_cidr", str, "0.0.0.0/0",
           "who may reach the seats' SSH port; narrow it to the classroom's address range"),
    Option("", "parallel", int, 32, "SSH bootstraps at once"),
    Option("", "ssh_wait_seconds", int, 600,
           "how long a seat's SSH may take to answer before the seat counts as failed"),
    Option("", "volume_gb", int, 20, "root disk per seat, GB (gp3)"),
    Option("", "student_credentials", str, "instance-profile",
           "instance-profile (no keys on machines) | access-keys (a restricted IAM user per seat)",
           choices=("instance-profile", "access-keys")),
    Option("", "stable_addresses", bool, False,
           "give every seat an Elastic IP so its address survives stop/start (costs a little)"),
    Option("", "course_title", str, "", "printed on every handout card"),
    Option("", "page_size", str, "A4", "A4 | letter, for the handouts",
           choices=("A4", "letter")),
    Option("images", "*", str, None, "region = \"ami-...\" overrides"),
    Option("bootstrap", "apt_packages", list, ["python3-numpy", "emacs-nox", "nano"],
           "Debian/Ubuntu packages on every seat", item_kind=str),
    Option("bootstrap", "pip_packages", list, ["mrjob"],
           "Python packages, installed in ~/venv on every seat", item_kind=str),
    Option("bootstrap", "materials", str, "",
           "optional local archive (.tar.gz or .zip), unpacked in every seat's home"),
    Option("bootstrap", "commands", list, [], "extra shell lines, run as the login user, last",
           item_kind=str),
    Option("emr", "mode", str, "per-seat", "per-seat | shared | none",
           choices=("per-seat", "shared", "none")),
    Option("emr", "release", str, "emr-7.5.0", "EMR release label"),
    Option("emr", "instance_type", str, "m5.xlarge", "EMR node type"),
    Option("emr", "instance_count", int, 3, "nodes per cluster (1 primary + core nodes)"),
    Option("emr", "idle_timeout_minutes", int, 120,
           "an idle cluster terminates itself after this long"),
    Option("budget", "max_hourly_usd", (int, float), 100.0,
           "provision refuses a plan above this"),
    Option("budget", "alarm_usd", list, [10, 50, 100], "billing alarms, USD",
           item_kind=(int, float)),  # type: ignore[arg-type]
    Option("budget", "alarm_email", str, "", "who the billing alarms e-mail"),
)

SECTIONS = ("images", "bootstrap", "emr", "budget")


@dataclass(frozen=True)
class Bootstrap:
    apt_packages: tuple[str, ...]
    pip_packages: tuple[str, ...]
    materials: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class Emr:
    mode: str
    release: str
    instance_type: str
    instance_count: int
    idle_timeout_minutes: int


@dataclass(frozen=True)
class Budget:
    max_hourly_usd: float
    alarm_usd: tuple[float, ...]
    alarm_email: str


@dataclass(frozen=True)
class Config:
    session: str
    regions: tuple[str, ...]
    instance_type: str
    image: str
    login_user: str
    connect: str
    ssh_config: str
    ssh_cidr: str
    parallel: int
    ssh_wait_seconds: int
    volume_gb: int
    student_credentials: str
    stable_addresses: bool
    course_title: str
    page_size: str
    images: dict[str, str]
    bootstrap: Bootstrap
    emr: Emr
    budget: Budget
    path: str = ""  # where it was read from, "" for defaults
    base_dir: Path = field(default_factory=Path.cwd)  # relative paths resolve here

    def image_for(self, region: str) -> str:
        return self.images.get(region, self.image)

    def resolve_path(self, value: str) -> Path:
        return resolve(value, self.base_dir)

    def with_overrides(self, **changes: Any) -> Config:
        from dataclasses import replace

        return replace(self, **changes)


def resolve(value: str, base: Path) -> Path:
    """A path from labkit.toml: ``~`` expanded, relative to the file's own folder."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
             list: "a list"}
    if isinstance(kind, tuple):
        return "a number" if set(kind) == {int, float} else " or ".join(names[k] for k in kind)
    return names.get(kind, kind.__name__)


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # TOML true is not a number here
    return isinstance(value, kinds)


def _key_line(text: str, section: str, key: str) -> int | None:
    """The line where ``key`` is set in ``section``, for messages (tomllib gives none).

    A key at the top level that is a table (an unknown ``[section]``) is found by its
    header line.
    """
    current = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        m = re.match(r"^\[\[?([^\]]+)\]", line)
        if m:
            current = m.group(1).strip()
            if current.split(".")[0].strip().strip('"') == (section or key) and (
                    not section or current == f"{section}.{key}"):
                return number
            continue
        if current == section and re.match(rf"^\"?{re.escape(key)}\"?\s*=", line):
            return number
    return None


def default_config(session: str) -> Config:
    """The built-in defaults, for commands that can run without a labkit.toml."""
    return _build({"session": session}, path="", text="", session_from_option=True)


def load_config(path: Path, *, session_override: str | None = None) -> Config:
    """Read and validate ``labkit.toml``; every problem is an ``InputError`` naming the key."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("config file not found", path=str(path),
                         hint="run `labkit init` to write a starter labkit.toml, "
                              "or pass -c PATH") from None
    except OSError as e:
        raise InputError(f"cannot read config: {e.strerror}", path=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError("not valid UTF-8 text", path=str(path), line=line,
                         hint="save the file as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise InputError(f"not valid TOML: {e}", path=str(path),
                         line=int(m.group(1)) if m else None,
                         hint="check quotes and brackets; strings need \"double quotes\"") from None
    if session_override:
        data["session"] = session_override
    return _build(data, path=str(path), text=text, base_dir=path.resolve().parent,
                  session_from_option=bool(session_override))


def _build(data: dict[str, Any], *, path: str, text: str, base_dir: Path | None = None,
           session_from_option: bool = False) -> Config:
    def fail(message: str, section: str, key: str, hint: str = "") -> InputError:
        dotted = f"{section}.{key}" if section else key
        if session_from_option and dotted == "session":
            # The value came from --session, not from the file: point there.
            return InputError(message, key="--session", hint=hint)
        return InputError(message, path=path or "labkit.toml",
                          line=_key_line(text, section, key) if text else None,
                          key=dotted, hint=hint)

    by_section: dict[str, dict[str, Option]] = {}
    for option in OPTIONS:
        by_section.setdefault(option.section, {})[option.key] = option

    values: dict[str, dict[str, Any]] = {s: {} for s in ("",) + SECTIONS}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, list) and value and all(
                isinstance(v, dict) for v in value):
            raise fail(f"[[{key}]] makes a list of tables", "", key,
                       hint=f"write the header with single brackets: [{key}]")
        if isinstance(value, dict):
            if key not in SECTIONS:
                close = difflib.get_close_matches(key, SECTIONS, n=1)
                raise fail(f"unknown section [{key}]", "", key,
                           hint=f"did you mean [{close[0]}]?" if close
                           else f"valid sections: {', '.join(SECTIONS)}")
            for sub, subvalue in value.items():
                values[key][sub] = subvalue
        else:
            values[""][key] = value

    for section, items in values.items():
        options = by_section.get(section, {})
        for key, value in items.items():
            opt = options.get(key) or options.get("*")
            if opt is None:
                valid = [k for k in options if k != "*"]
                if section == "":
                    valid += [f"[{s}]" for s in SECTIONS]
                close = difflib.get_close_matches(key, valid, n=1)
                hint = (f"did you mean {close[0]!r}?" if close
                        else f"valid keys here: {', '.join(sorted(valid))}")
                raise fail("unknown key", section, key, hint=hint)
            if not _is(value, opt.kind):
                raise fail(f"must be {_type_name(opt.kind)}, not {value!r}", section, key,
                           hint=f"for example: {key} = {_example(opt)}")
            if opt.item_kind is not None:
                for item in value:
                    if not _is(item, opt.item_kind):
                        raise fail(f"every item must be {_type_name(opt.item_kind)}; "
                                   f"{item!r} is not", section, key,
                                   hint=f"for example: {key} = "
                                        + (_example(opt) if opt.default else '["..."]'))
            if opt.choices and value not in opt.choices:
                close = difflib.get_close_matches(str(value), opt.choices, n=1)
                raise fail(f"{value!r} is not one of {', '.join(opt.choices)}", section, key,
                           hint=f'did you mean "{close[0]}"?' if close
                           else f"for example: {key} = {_example(opt)}")

    def get(section: str, key: str) -> Any:
        if key in values[section]:
            return values[section][key]
        default = by_section[section][key].default
        return list(default) if isinstance(default, list) else default

    session = values[""].get("session")
    if session is None:
        raise fail("missing: every class needs a session name", "", "session",
                   hint='add a line such as: session = "hadoop-2026"')
    if not SESSION_RE.fullmatch(session):
        raise fail(f"invalid session name {session!r}", "", "session",
                   hint="use a-z, 0-9 and '-', at most 32 characters, "
                        "starting and ending with a letter or digit")

    region_list = get("", "regions")
    if not region_list:
        raise fail("needs at least one region", "", "regions",
                   hint='for example: regions = ["eu-west-1", "us-east-1"]')
    for r in region_list:
        if not known_regions.is_known(r):
            raise fail(f"unknown region {r!r}", "", "regions", hint=known_regions.suggest(r))
    if len(set(region_list)) != len(region_list):
        raise fail("a region is listed twice", "", "regions")
    for r, ami in values["images"].items():
        if not known_regions.is_known(r):
            raise fail(f"unknown region {r!r}", "images", r, hint=known_regions.suggest(r))
        if not re.match(r"^ami-[0-9a-f]{8,17}$", ami):
            raise fail(f"{ami!r} is not an AMI id", "images", r, hint='use "ami-0123456789abcdef0"')

    image = get("", "image")
    if not (image.startswith("ssm:/") or re.match(r"^ami-[0-9a-f]{8,17}$", image)):
        raise fail(f"{image!r} is neither an AMI id nor an ssm: parameter", "", "image",
                   hint='use "ami-..." or "ssm:/aws/service/..."')
    if not re.match(r"^[a-z0-9][a-z0-9.-]*\.[a-z0-9]+$", get("", "instance_type")):
        raise fail("not an instance type", "", "instance_type", hint='for example "t3.medium"')
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", get("", "login_user")):
        raise fail("not a valid Linux user name", "", "login_user", hint='for example "ubuntu"')
    try:
        ipaddress.ip_network(get("", "ssh_cidr"), strict=False)
    except ValueError:
        raise fail("not an address range", "", "ssh_cidr",
                   hint='for example "0.0.0.0/0" or "203.0.113.0/24"') from None
    for key, low, high in (("parallel", 1, 512), ("volume_gb", 8, 16384),
                           ("ssh_wait_seconds", 1, 7200)):
        if not low <= get("", key) <= high:
            raise fail(f"must be between {low} and {high}", "", key,
                       hint=f"the default is {by_section[''][key].default}")
    if not 1 <= get("emr", "instance_count") <= 100:
        raise fail("must be between 1 and 100", "emr", "instance_count",
                   hint="the default is 3 (1 primary + 2 core nodes)")
    if not 1 <= get("emr", "idle_timeout_minutes") <= 7 * 24 * 60:
        raise fail("must be between 1 and 10080 (a week)", "emr", "idle_timeout_minutes",
                   hint="an idle cluster keeps costing money; 120 is a good value")
    if get("budget", "max_hourly_usd") <= 0:
        raise fail("must be more than 0", "budget", "max_hourly_usd")
    if any(a <= 0 for a in get("budget", "alarm_usd")):
        raise fail("every alarm must be more than 0", "budget", "alarm_usd")
    for pkg in get("bootstrap", "apt_packages"):
        if not re.match(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+:~-]+)?$", pkg):
            raise fail(f"{pkg!r} is not a Debian package name", "bootstrap", "apt_packages")
    for pkg in get("bootstrap", "pip_packages"):
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._\[\],<>=!~ -]*$", pkg):
            raise fail(f"{pkg!r} is not a pip requirement", "bootstrap", "pip_packages")
    materials = get("bootstrap", "materials")
    base = base_dir or Path.cwd()
    if materials:
        mp = resolve(materials, base)
        if not mp.is_file():
            raise fail(f"no such file: {mp}", "bootstrap", "materials",
                       hint="give a .tar.gz or .zip of the course materials, or remove the line")
    ssh_config = get("", "ssh_config")
    if ssh_config:
        sp = resolve(ssh_config, base)
        if not sp.is_file():
            raise fail(f"no such file: {sp}", "", "ssh_config",
                       hint="give the path of an OpenSSH client config, or remove the line")
        ssh_config = str(sp)

    return Config(
        session=session,
        regions=tuple(region_list),
        instance_type=get("", "instance_type"),
        image=image,
        login_user=get("", "login_user"),
        connect=get("", "connect"),
        ssh_config=ssh_config,
        ssh_cidr=get("", "ssh_cidr"),
        parallel=get("", "parallel"),
        ssh_wait_seconds=get("", "ssh_wait_seconds"),
        volume_gb=get("", "volume_gb"),
        student_credentials=get("", "student_credentials"),
        stable_addresses=get("", "stable_addresses"),
        course_title=get("", "course_title"),
        page_size=get("", "page_size"),
        images=dict(values["images"]),
        bootstrap=Bootstrap(
            apt_packages=tuple(get("bootstrap", "apt_packages")),
            pip_packages=tuple(get("bootstrap", "pip_packages")),
            materials=materials,
            commands=tuple(get("bootstrap", "commands")),
        ),
        emr=Emr(
            mode=get("emr", "mode"),
            release=get("emr", "release"),
            instance_type=get("emr", "instance_type"),
            instance_count=get("emr", "instance_count"),
            idle_timeout_minutes=get("emr", "idle_timeout_minutes"),
        ),
        budget=Budget(
            max_hourly_usd=float(get("budget", "max_hourly_usd")),
            alarm_usd=tuple(float(a) for a in get("budget", "alarm_usd")),
            alarm_email=get("budget", "alarm_email"),
        ),
        path=path,
        base_dir=base,
    )


def _example(opt: Option) -> str:
    if opt.default is None:
        return '"..."'
    if isinstance(opt.default, str):
        return f'"{opt.default}"'
    if isinstance(opt.default, bool):
        return "true" if opt.default else "false"
    if isinstance(opt.default, list):
        return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v)
                               for v in opt.default) + "]"
    return str(opt.default)


def starter_toml(session: str) -> str:
    """The text `labkit init` writes: every option with its default and its doc."""
    lines = ["# labkit configuration. Every key is shown with its default; edit what you need.",
             "# Precedence: these values, then command-line options such as --session.", ""]
    for opt in OPTIONS:
        if opt.section:
            continue
        value = f'"{session}"' if opt.key == "session" else _example(opt)
        lines.append(f"{opt.key} = {value}".ljust(40) + f"  # {opt.doc}")
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for opt in OPTIONS:
            if opt.section != section:
                continue
            if opt.key == "*":
                lines.append(f'# eu-west-1 = "ami-0123456789abcdef0"   # {opt.doc}')
                continue
            lines.append(f"{opt.key} = {_example(opt)}".ljust(40) + f"  # {opt.doc}")
    return "\n".join(lines) + "\n"
