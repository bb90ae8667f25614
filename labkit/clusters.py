"""EMR clusters for the seats, started while the machines launch, and each seat's
``~/.mrjob.conf``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from labkit.templating import render

if TYPE_CHECKING:
    from labkit.provision import Provisioner, Summary
    from labkit.roster import Seat


class ClusterJob:
    """Cluster creation running alongside the launches."""

    def __init__(self) -> None:
        self.ids_known = threading.Event()
        self.ids_known.set()

    def wait_ids(self) -> None:
        self.ids_known.wait()


def start_alongside(prov: Provisioner, seats: dict[str, Seat]) -> ClusterJob:
    return ClusterJob()


def finish(prov: Provisioner, seats: dict[str, Seat], summary: Summary) -> None:
    return None


def mrjob_conf(prov: Provisioner, seat: str) -> str:
    st = prov.ledger.seat(seat)
    bucket = prov.ledger.state.bucket
    values: dict[str, Any] = {
        "seat": seat, "region": st.cluster_region or st.region,
        "cluster_id": st.cluster_id,
        "cloud_tmp_dir": f"s3://{bucket}/seats/{seat}/tmp/" if bucket else "",
    }
    return render("mrjob.conf.j2", **values).rstrip("\n")


def states(aws: Any, ledger: Any) -> dict[str, str]:
    """cluster id -> state, for `labkit status`."""
    return {}


def stop_all(aws: Any, config: Any, ledger: Any, console: Any) -> int:
    """Terminate the session's clusters before a class break; returns how many."""
    return 0


def start_all(aws: Any, config: Any, ledger: Any, out: Any, console: Any) -> dict[str, str]:
    """New clusters after a break, and every seat's ~/.mrjob.conf updated."""
    return {}
