"""How to reach a seat over SSH, from the session's ledger (one place for every caller)."""

from __future__ import annotations

from pathlib import Path

from labkit.bootstrap import Target
from labkit.config import Config
from labkit.state import Ledger


def target_for(config: Config, ledger: Ledger, out: Path, seat: str) -> Target:
    st = ledger.seat(seat)
    return Target(seat=seat, host=st.host, username=config.login_user,
                  host_key=st.host_key_public, key_file=out / "id_ed25519",
                  ssh_config=config.ssh_config)
