"""The session folder's files, rendered from the ledger: credentials sheet, handouts,
``ssh_config`` and ``known_hosts``. ``labkit handouts`` calls the same function."""

from __future__ import annotations

from pathlib import Path

from labkit import handouts
from labkit.config import Config
from labkit.files import write_private
from labkit.roster import Roster
from labkit.secrets import fingerprint
from labkit.state import Ledger


def cards(config: Config, ledger: Ledger, roster: Roster) -> list[handouts.Card]:
    out: list[handouts.Card] = []
    for seat in roster.seats:
        st = ledger.seat(seat.name)
        for student in seat.students:
            out.append(handouts.Card(
                seat=seat.name, student_id=student.student_id, name=student.name,
                email=student.email, region=st.region, host=st.host,
                username=config.login_user, password=st.password,
                instance_id=st.instance_id, cluster_id=st.cluster_id,
                host_key_sha256=fingerprint(st.host_key_public) if st.host_key_public else "",
                ssh_command=f"ssh {config.login_user}@{st.host}" if st.host else ""))
    return out


def known_hosts_text(ledger: Ledger, seats: list[str]) -> str:
    lines = []
    for name in seats:
        st = ledger.seat(name)
        if st.host and st.host_key_public:
            key = " ".join(st.host_key_public.split()[:2])
            lines.append(f"{st.host},{name} {key}")
    return "\n".join(lines) + ("\n" if lines else "")


def ssh_config_text(config: Config, ledger: Ledger, seats: list[str], out: Path) -> str:
    out = out.resolve()
    lines = [f"# labkit session {config.session}: `ssh -F {out / 'ssh_config'} <seat>`",
             "# Host keys are pinned in known_hosts beside this file; a changed key is refused.",
             ""]
    for name in seats:
        st = ledger.seat(name)
        if not st.host:
            continue
        lines += [f"Host {name}",
                  f"  HostName {st.host}",
                  f"  HostKeyAlias {st.host}",
                  f"  User {config.login_user}",
                  f"  IdentityFile {out / 'id_ed25519'}",
                  "  IdentitiesOnly yes",
                  f"  UserKnownHostsFile {out / 'known_hosts'}",
                  "  StrictHostKeyChecking yes",
                  ""]
    if config.ssh_config:
        # After the seats, so the seat blocks win where both set a value; the included
        # file adds what they leave open (a ProxyJump for connect=private, `Match host`
        # rules keyed on the address).
        lines += [f"Include {Path(config.ssh_config).resolve()}", ""]
    return "\n".join(lines)


def write_all(config: Config, ledger: Ledger, roster: Roster, out: Path) -> None:
    seats = [s.name for s in roster.seats]
    write_private(out / "known_hosts", known_hosts_text(ledger, seats), mode=0o644)
    write_private(out / "ssh_config", ssh_config_text(config, ledger, seats, out), mode=0o644)
    all_cards = cards(config, ledger, roster)
    handouts.write_credentials_csv(out / "credentials.csv", all_cards)
    handouts.render_handouts_pdf(out / "handouts.pdf", all_cards, session=config.session,
                                 page_size=config.page_size,
                                 course_title=config.course_title)
