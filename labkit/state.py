"""The session ledger on disk: ``<out>/state.json``, mode 0600, written atomically.

It holds what labkit needs to resume and what no AWS tag can hold: passwords, host keys,
the session's private key path. Every change is saved at once (under a lock, from any
thread), so that a password is on disk before any machine receives it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from labkit.errors import InputError
from labkit.files import write_private

STATE_VERSION = 1


@dataclass
class SeatState:
    seat: str
    region: str = ""
    instance_id: str = ""
    host: str = ""  # the address students use (public, or private with connect=private)
    private_ip: str = ""
    password: str = ""
    password_hash: str = ""
    host_key_private: str = ""
    host_key_public: str = ""
    instance_state: str = ""
    bootstrap: str = "pending"  # pending | ok | failed
    error: str = ""
    cluster_id: str = ""
    cluster_state: str = ""
    cluster_region: str = ""
    allocation_id: str = ""  # Elastic IP, with stable_addresses
    placement_note: str = ""  # why the seat is where it is (spill-over)
    password_reset: bool = False  # the password was regenerated because state was lost

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeatState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RegionState:
    region: str
    key_name: str = ""
    security_group_id: str = ""
    image_id: str = ""
    subnets: list[str] = field(default_factory=list)


@dataclass
class SessionState:
    session: str
    seats: dict[str, SeatState] = field(default_factory=dict)
    regions: dict[str, RegionState] = field(default_factory=dict)
    bucket: str = ""
    account_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Ledger:
    """A ``SessionState`` bound to its file; every ``update`` is saved before it returns."""

    def __init__(self, path: Path, state: SessionState) -> None:
        self.path = path
        self.state = state
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path, session: str) -> Ledger:
        if not path.exists():
            return cls(path, SessionState(session=session))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"the session state cannot be read: {e}", path=str(path),
                             hint="move the file away; labkit finds the machines again by "
                                  "their tags") from None
        if data.get("session") != session:
            raise InputError(f"this folder belongs to session {data.get('session')!r}, "
                             f"not {session!r}", path=str(path),
                             hint="use --out to pick another folder, or --session")
        state = SessionState(
            session=session,
            seats={k: SeatState.from_dict(v) for k, v in data.get("seats", {}).items()},
            regions={k: RegionState(**v) for k, v in data.get("regions", {}).items()},
            bucket=data.get("bucket", ""),
            account_id=data.get("account_id", ""),
            extra=data.get("extra", {}),
        )
        return cls(path, state)

    def save(self) -> None:
        with self._lock:
            doc = {"version": STATE_VERSION, **asdict(self.state)}
            write_private(self.path, json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def seat(self, name: str) -> SeatState:
        with self._lock:
            if name not in self.state.seats:
                self.state.seats[name] = SeatState(seat=name)
            return self.state.seats[name]

    def update_seat(self, name: str, **changes: Any) -> SeatState:
        with self._lock:
            seat = self.seat(name)
            for key, value in changes.items():
                if not hasattr(seat, key):
                    raise AttributeError(key)
                setattr(seat, key, value)
            self.save()
            return seat

    def region(self, name: str) -> RegionState:
        with self._lock:
            if name not in self.state.regions:
                self.state.regions[name] = RegionState(region=name)
            return self.state.regions[name]

    @contextmanager
    def editing(self) -> Iterator[SessionState]:
        """Change several things and save once."""
        with self._lock:
            yield self.state
            self.save()
