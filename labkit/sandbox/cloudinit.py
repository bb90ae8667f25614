"""The part of cloud-init that a labkit seat relies on, as files for a machine's first boot.

A real Ubuntu cloud image runs cloud-init, which reads the instance's user-data and
key pair and then creates the login user, installs the key pair as its authorized
key, writes the SSH host keys from ``ssh_keys``, and configures sshd. The sandbox has
no cloud-init, so this module turns the same inputs into a *seed*: a directory of
ready files plus a boot script that installs them inside the machine on its first
boot (later boots after a stop keep what the first one wrote, as on EC2).

Supported cloud-config keys: ``ssh_keys``, ``ssh_authorized_keys``, ``ssh_deletekeys``,
``ssh_genkeytypes``, ``ssh_pwauth`` and ``disable_root`` (root login is always off, as
with cloud-init's default). Other keys are named in the machine's console log as ignored, so a
bootstrap that silently depends on them shows up in rehearsal.
"""

from __future__ import annotations

import binascii
import gzip
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml  # type: ignore[import-untyped]

SUPPORTED_KEYS = frozenset({"ssh_keys", "ssh_authorized_keys", "ssh_deletekeys", "ssh_genkeytypes",
                            "ssh_pwauth", "disable_root"})
_DEFAULT_KEY_TYPES = ("rsa", "ecdsa", "ed25519")

# cloud-init's names in ssh_keys -> the file sshd expects.
_HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")
_HOST_KEY_FILES = {
    **{f"{t}_private": f"ssh_host_{t}_key" for t in _HOST_KEY_TYPES},
    **{f"{t}_public": f"ssh_host_{t}_key.pub" for t in _HOST_KEY_TYPES},
    **{f"{t}_certificate": f"ssh_host_{t}_key-cert.pub" for t in _HOST_KEY_TYPES},
}


@dataclass
class CloudConfig:
    """What the machine takes from the instance's user-data."""

    host_keys: dict[str, str] = field(default_factory=dict)   # file name -> content
    authorized_keys: list[str] = field(default_factory=list)
    password_auth: bool | None = None                        # ssh_pwauth; None: image default
    delete_host_keys: bool = True                            # ssh_deletekeys
    generate_key_types: tuple[str, ...] = _DEFAULT_KEY_TYPES  # ssh_genkeytypes, without ssh_keys
    ignored_keys: list[str] = field(default_factory=list)
    note: str = ""                                           # why user-data was not used


def parse_user_data(raw: bytes) -> CloudConfig:
    """Read ``#cloud-config`` user-data; anything else leaves the image defaults.

    Never logs or raises with the content: user-data carries private host keys.
    """
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return CloudConfig(note="user-data looks gzipped but does not decompress")
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return CloudConfig(note="no user-data")
    if not text.startswith("#cloud-config"):
        first = text.splitlines()[0][:40]
        return CloudConfig(note=f"user-data is not #cloud-config (starts with {first!r}); "
                                "the sandbox runs only cloud-config")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return CloudConfig(note=f"#cloud-config user-data is not valid YAML{where}; "
                                "cloud-init would ignore it too")
    if not isinstance(data, dict):
        return CloudConfig(note="#cloud-config user-data is not a mapping")
    config = CloudConfig(ignored_keys=sorted(str(k) for k in data if k not in SUPPORTED_KEYS))
    keys = data.get("ssh_keys") or {}
    if isinstance(keys, Mapping):
        for name, value in keys.items():
            target = _HOST_KEY_FILES.get(str(name))
            if target and isinstance(value, str):
                config.host_keys[target] = value if value.endswith("\n") else value + "\n"
    authorized = data.get("ssh_authorized_keys") or []
    if isinstance(authorized, str):
        authorized = [authorized]
    if isinstance(authorized, Sequence):
        config.authorized_keys = [str(k).strip() for k in authorized if str(k).strip()]
    if isinstance(data.get("ssh_deletekeys"), bool):
        config.delete_host_keys = data["ssh_deletekeys"]
    types = data.get("ssh_genkeytypes")
    if isinstance(types, list):
        config.generate_key_types = tuple(t for t in map(str, types) if t in _DEFAULT_KEY_TYPES)
    pwauth = data.get("ssh_pwauth")
    if isinstance(pwauth, bool):
        config.password_auth = pwauth
    elif isinstance(pwauth, str) and pwauth.lower() in ("true", "yes", "false", "no"):
        config.password_auth = pwauth.lower() in ("true", "yes")
    return config


def decode_user_data(value: str | None) -> bytes:
    """DescribeInstanceAttribute gives user-data base64-encoded (or not at all)."""
    if not value:
        return b""
    try:
        return binascii.a2b_base64(value)
    except binascii.Error:
        return value.encode()


@dataclass(frozen=True)
class SeedSettings:
    """Per-machine facts the boot script needs besides the user-data."""

    instance_id: str
    hostname: str
    login_user: str
    listen: Sequence[str]            # "address:port" for sshd's ListenAddress
    ssh_delay: float = 0.0
    dead_ssh: bool = False
    wheelhouse: bool = False         # a wheelhouse is mounted at WHEELHOUSE_IN_MACHINE


WHEELHOUSE_IN_MACHINE = "/var/lib/labkit/wheelhouse"

# As on Ubuntu 24.04 cloud images: Include first, so drop-ins win (first value wins in
# sshd), and password logins off in the cloud image's own drop-in as well as here. A
# bootstrap that only edits sshd_config therefore fails here exactly as on EC2; one that
# adds an earlier drop-in (e.g. 50-labkit.conf) works in both.
SSHD_CONFIG = """\
# Written by labkit's sandbox as an Ubuntu cloud image ships it.
Include /etc/ssh/sshd_config.d/*.conf

PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_* COLORTERM NO_COLOR
Subsystem sftp /usr/lib/openssh/sftp-server
"""
CLOUDIMG_SETTINGS = "PasswordAuthentication no\n"

# No systemd runs in a sandbox machine: sshd is PID 1. These stand-ins make the usual
# ways to reload sshd after a config change work, and refuse as systemd would when the
# caller is not root (so a bootstrap that forgets sudo fails here too).
SYSTEMCTL_SHIM = r"""#!/bin/sh
# labkit sandbox machine: no systemd here; sshd is PID 1 and the only service.
action=""; units=""
for arg in "$@"; do
  case "$arg" in
    -*) ;;
    *) if [ -z "$action" ]; then action=$arg; else units="$units $arg"; fi ;;
  esac
done
is_ssh() { case "$1" in ssh|sshd|ssh.service|sshd.service|ssh.socket) return 0;; *) return 1;; esac; }
case "$action" in
  ""|daemon-reload|daemon-reexec|list-units|list-unit-files|list-timers) exit 0 ;;
esac
rc=0
for unit in $units; do
  if is_ssh "$unit"; then
    case "$action" in
      reload|restart|try-restart|reload-or-restart|try-reload-or-restart|force-reload|condrestart|start)
        if [ "$(id -u)" != 0 ]; then
          echo "Failed to $action $unit: Access denied" >&2; exit 1
        fi
        # systemd's unit runs sshd -t before reloading; a bad config must not kill sshd.
        /usr/sbin/sshd -t || exit 1
        kill -HUP 1 ;;
      stop|kill|disable|mask)
        echo "systemctl: the sandbox keeps ssh running (it is this machine's only way in)" >&2 ;;
      is-active) echo active ;;
      is-enabled) echo enabled ;;
      is-failed) echo active; rc=1 ;;
      status) printf '%s\n' "* ssh.service - OpenBSD Secure Shell server" "     Active: active (running)" ;;
      *) ;;
    esac
  else
    case "$action" in
      is-active) echo inactive; rc=3 ;;
      is-enabled) echo disabled; rc=1 ;;
      is-failed) echo inactive; rc=1 ;;
      status) echo "Unit $unit could not be found." >&2; rc=4 ;;
      *) echo "systemctl: no systemd in this sandbox machine; ignoring '$action $unit'" >&2 ;;
    esac
  fi
done
exit $rc
"""

SERVICE_SHIM = r"""#!/bin/sh
# labkit sandbox machine: 'service NAME ACTION' is 'systemctl ACTION NAME'.
if [ $# -lt 2 ]; then
  echo "Usage: service < option > | --status-all | [ service_name [ command | --full-restart ] ]" >&2
  exit 1
fi
exec /usr/bin/systemctl "$2" "$1"
"""

CLOUD_INIT_SHIM = r"""#!/bin/sh
# labkit sandbox machine: cloud-init's work was done before sshd started.
case "$1" in
  status) echo "status: done"; exit 0 ;;
  --version) echo "/usr/bin/cloud-init 24.4 (labkit sandbox)"; exit 0 ;;
esac
echo "cloud-init: only 'cloud-init status' exists in the sandbox" >&2
exit 1
"""

# Runs inside the machine after pivot_root, as PID 1, with the seed at /run/labkit.
BOOT_SCRIPT = r"""#!/bin/bash
set -uo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
seed=/run/labkit
. "$seed/machine.env"
say() { echo "labkit-sandbox[$INSTANCE_ID]: $*" >&2; }
sem=/var/lib/cloud/instances/$INSTANCE_ID/sem

if [ ! -e "$sem/config_ssh" ]; then
  # Once per instance, like cloud-init's per-instance modules: a stop/start keeps all this.
  say "first boot: creating $LOGIN_USER and configuring sshd"
  if ! id "$LOGIN_USER" >/dev/null 2>&1; then
    groups=""
    for g in adm cdrom dip plugdev sudo; do
      getent group "$g" >/dev/null && groups="$groups,$g"
    done
    useradd --create-home -K HOME_MODE=0750 --shell /bin/bash ${groups:+--groups "${groups#,}"} "$LOGIN_USER"
  fi
  install -d -m 755 /etc/sudoers.d
  echo "$LOGIN_USER ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/90-cloud-init-users
  chmod 440 /etc/sudoers.d/90-cloud-init-users
  home=$(getent passwd "$LOGIN_USER" | cut -d: -f6)
  install -d -m 700 -o "$LOGIN_USER" -g "$LOGIN_USER" "$home/.ssh"
  install -m 600 -o "$LOGIN_USER" -g "$LOGIN_USER" "$seed/authorized_keys" "$home/.ssh/authorized_keys"

  if [ "$DELETE_HOST_KEYS" = 1 ]; then rm -f /etc/ssh/ssh_host_*key*; fi
  if compgen -G "$seed/hostkeys/ssh_host_*" >/dev/null; then
    for f in "$seed"/hostkeys/ssh_host_*; do
      case "$f" in *.pub) mode=644 ;; *) mode=600 ;; esac
      install -m "$mode" -o root -g root "$f" /etc/ssh/
    done
  else
    # cloud-init generates host keys only when user-data brings none.
    for type in $GENERATE_KEY_TYPES; do
      f=/etc/ssh/ssh_host_${type}_key
      [ -e "$f" ] || ssh-keygen -q -N '' -t "$type" -f "$f"
    done
  fi
  # The host's own drop-ins are not the cloud image's: start from Ubuntu's set alone.
  install -d -m 755 /etc/ssh/sshd_config.d
  rm -f /etc/ssh/sshd_config.d/*.conf
  install -m 644 "$seed/sshd_config" /etc/ssh/sshd_config
  install -m 644 "$seed/60-cloudimg-settings.conf" /etc/ssh/sshd_config.d/60-cloudimg-settings.conf
  if [ -e "$seed/50-cloud-init.conf" ]; then
    install -m 644 "$seed/50-cloud-init.conf" /etc/ssh/sshd_config.d/50-cloud-init.conf
  fi
  install -m 755 "$seed/systemctl" /usr/bin/systemctl
  install -m 755 "$seed/service" /usr/sbin/service
  install -m 755 "$seed/cloud-init" /usr/bin/cloud-init
  if [ -e "$seed/pip.conf" ]; then install -m 644 "$seed/pip.conf" /etc/pip.conf; fi
  echo "$HOSTNAME" > /etc/hostname
  grep -q " $HOSTNAME\$" /etc/hosts || echo "127.0.1.1 $HOSTNAME" >> /etc/hosts
  mkdir -p "$sem" && touch "$sem/config_ssh"
fi
ln -sfn "/var/lib/cloud/instances/$INSTANCE_ID" /var/lib/cloud/instance
touch /var/lib/cloud/instance/boot-finished
rm -rf "$seed/hostkeys"
install -d -m 755 /run/sshd

if [ "$DEAD_SSH" = 1 ]; then
  say "this machine's SSH never answers (dead_ssh)"
  exec sleep infinity
fi
if [ "$SSH_DELAY" != 0 ]; then sleep "$SSH_DELAY"; fi
listen=()
for address in $LISTEN; do listen+=(-o "ListenAddress=$address"); done
say "starting sshd on $LISTEN"
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  /usr/sbin/sshd -D -e "${listen[@]}"
"""


def write_seed(seed: Path, settings: SeedSettings, config: CloudConfig,
               authorized_keys: Sequence[str]) -> None:
    """Write everything the machine's first boot installs into the directory ``seed``.

    ``seed`` holds private host keys: it is created mode 0700 and its files 0600.
    """
    seed.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(seed, 0o700)
    hostkeys = seed / "hostkeys"
    hostkeys.mkdir(mode=0o700, exist_ok=True)
    for name, content in config.host_keys.items():
        _write(hostkeys / name, content, 0o600)
    keys = [*authorized_keys, *config.authorized_keys]
    _write(seed / "authorized_keys", "".join(k.strip() + "\n" for k in keys), 0o600)
    env = {
        "INSTANCE_ID": settings.instance_id,
        "HOSTNAME": settings.hostname,
        "LOGIN_USER": settings.login_user,
        "LISTEN": " ".join(settings.listen),
        "SSH_DELAY": _format_delay(settings.ssh_delay),
        "DEAD_SSH": "1" if settings.dead_ssh else "0",
        "DELETE_HOST_KEYS": "1" if config.delete_host_keys else "0",
        "GENERATE_KEY_TYPES": " ".join(config.generate_key_types),
    }
    _write(seed / "machine.env", "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()), 0o600)
    _write(seed / "boot.sh", BOOT_SCRIPT, 0o700)
    _write(seed / "sshd_config", SSHD_CONFIG, 0o644)
    _write(seed / "60-cloudimg-settings.conf", CLOUDIMG_SETTINGS, 0o644)
    if config.password_auth is not None:
        # cloud-init's ssh_pwauth writes this drop-in, which sorts before the image's 60-.
        flag = "yes" if config.password_auth else "no"
        _write(seed / "50-cloud-init.conf", f"PasswordAuthentication {flag}\n", 0o644)
    else:
        (seed / "50-cloud-init.conf").unlink(missing_ok=True)
    _write(seed / "systemctl", SYSTEMCTL_SHIM, 0o755)
    _write(seed / "service", SERVICE_SHIM, 0o755)
    _write(seed / "cloud-init", CLOUD_INIT_SHIM, 0o755)
    if settings.wheelhouse:
        # Machines have no network: pip must find everything in the instructor's wheelhouse.
        _write(seed / "pip.conf",
               f"[global]\nno-index = true\nfind-links = {WHEELHOUSE_IN_MACHINE}\n", 0o644)
    else:
        (seed / "pip.conf").unlink(missing_ok=True)


def _format_delay(delay: float) -> str:
    text = f"{max(delay, 0.0):.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _write(path: Path, content: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(path, mode)


_HOSTNAME_OK = re.compile(r"^[0-9.]+$")


def hostname_for(private_address: str, instance_id: str) -> str:
    """EC2's default hostname: ip-10-1-2-3 from the private address."""
    if private_address and _HOSTNAME_OK.match(private_address):
        return "ip-" + private_address.replace(".", "-")
    return instance_id


def describe(config: CloudConfig) -> list[str]:
    """Lines for the console log: what the user-data did, never what it contains."""
    lines: list[str] = []
    if config.note:
        lines.append(config.note)
    if config.host_keys:
        lines.append("host keys from user-data: " + ", ".join(sorted(config.host_keys)))
    elif not config.note:
        lines.append("user-data has no ssh_keys: the machine generates its own host keys")
    if config.ignored_keys:
        lines.append("cloud-config keys the sandbox ignores: " + ", ".join(config.ignored_keys))
    return lines
