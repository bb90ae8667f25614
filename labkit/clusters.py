"""EMR clusters and the seats' permissions.

Clusters are created *while* the machines launch and bootstrap (EMR takes minutes to
start; provisioning must not wait twice). Each seat gets an IAM role + instance profile
that may submit steps to its own cluster and use its own S3 prefix, and is explicitly
denied everything that allocates; the instructor's keys never reach a seat.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from labkit import bootstrap as ssh
from labkit import policies
from labkit.aws import emr, iam
from labkit.aws.session import Aws
from labkit.config import Config
from labkit.errors import AwsError
from labkit.state import Ledger
from labkit.templating import render

if TYPE_CHECKING:
    from labkit.provision import Provisioner, Summary
    from labkit.roster import Seat

IAM_THREADS = 8
# The launches wait at most this long for the clusters to be asked for first.
HEAD_START_SECONDS = 20.0


def seat_role_name(session: str, seat: str) -> str:
    return iam.iam_name(session, seat)


def nodes_role_name(session: str, seat: str | None) -> str:
    return iam.iam_name(session, seat, "emr")


def ensure_seat_access(aws: Aws, config: Config, ledger: Ledger, seats: Iterable[str]
                       ) -> dict[str, str]:
    """Each seat's role + instance profile (and, in access-keys mode, its IAM user).

    Returns seat -> instance profile ARN, for the launch call."""
    bucket = ledger.state.bucket
    shared = config.emr.mode == "shared"

    def one(seat: str) -> tuple[str, str]:
        doc = policies.seat_policy(session=config.session, seat=seat, bucket=bucket,
                                   shared_cluster=shared)
        arn = iam.ensure_role(aws, seat_role_name(config.session, seat),
                              trust=policies.ec2_trust_policy(), policy=doc,
                              session=config.session, seat=seat)
        if config.student_credentials == "access-keys":
            keys = ledger.state.extra.setdefault("access_keys", {})
            known = keys.get(seat, {}).get("id", "")
            created = iam.ensure_user_with_key(
                aws, seat_role_name(config.session, seat), policy=doc,
                session=config.session, seat=seat, known_key_id=known)
            if created:
                with ledger.editing():
                    keys[seat] = {"id": created[0], "secret": created[1]}
        return seat, arn

    with ThreadPoolExecutor(max_workers=IAM_THREADS) as pool:
        return dict(pool.map(one, list(seats)))


class ClusterJob:
    """Cluster creation running alongside the launches; failures are per seat.

    EMR takes far longer to come up than a seat's machine, so the clusters go first: the
    job looks for the session's clusters and prepares their roles while the seats' own
    IAM is made, and sends ``RunJobFlow`` once ``allow_create()`` is called (never if the
    provision stopped before launching anything: ``cancel()``). ``requested`` is set once
    every missing cluster has been asked for once; the launches wait for that (briefly),
    never for a retry and never for a cluster to come up.
    """

    def __init__(self, prov: Provisioner, seats: dict[str, Seat]) -> None:
        self.prov = prov
        self.seats = seats
        self.failed: dict[str, str] = {}
        self.ids_known = threading.Event()
        self.created: list[str] = []
        self.duplicates: list[str] = []  # "seat: EMR cluster j-..." terminated as extra
        self.requested = threading.Event()
        self._to_request: set[str] = set()
        self._request_lock = threading.Lock()
        self._may_create = threading.Event()
        self._cancelled = False
        self.thread = threading.Thread(target=self._run, name="clusters", daemon=True)

    def start(self, *, create_now: bool = True) -> ClusterJob:
        if create_now:
            self._may_create.set()
        if self.prov.config.emr.mode == "none":
            self.requested.set()
            self.ids_known.set()
        else:
            self.thread.start()
        return self

    def allow_create(self) -> None:
        self._may_create.set()

    def cancel(self) -> None:
        self._cancelled = True
        self._may_create.set()

    def wait_ids(self) -> None:
        self.ids_known.wait()

    def _asked(self, key: str) -> None:
        """The cluster for ``key`` (a seat, "" for the shared one) was asked for once."""
        with self._request_lock:
            self._to_request.discard(key)
            if not self._to_request:
                self.requested.set()

    def _await_permission(self) -> None:
        self._may_create.wait()
        if self._cancelled:
            raise AwsError("not created: the provision stopped before launching")

    def _run(self) -> None:
        try:
            self._create_missing()
        except Exception as e:  # noqa: BLE001 - every seat that needed a cluster learns why
            for seat in self.seats:
                if not self.prov.ledger.seat(seat).cluster_id:
                    self.failed[seat] = f"cluster: {e}"
        finally:
            self.requested.set()
            self.ids_known.set()

    def _create_missing(self) -> None:
        prov = self.prov
        config, ledger = prov.config, prov.ledger
        placement = prov.plan_placement_for_clusters
        regions = sorted({placement[s] for s in self.seats})
        existing = find_all(prov.aws, config.session, regions
                            + sorted({ledger.seat(s).cluster_region for s in self.seats
                                      if ledger.seat(s).cluster_region}))
        live = self._keep_one_each(existing)
        with self._request_lock:
            self._to_request = ({""} - set(live) if config.emr.mode == "shared"
                                else set(self.seats) - set(live))
        if not self._to_request:
            self.requested.set()
        iam.ensure_emr_default_roles(prov.aws)
        key = (prov.out / "id_ed25519.pub").read_text().strip()

        def make(seat: str | None, region: str) -> str:
            try:
                return make_asked(seat, region)
            finally:
                self._asked(seat or "")

        def make_asked(seat: str | None, region: str) -> str:
            prov.region_setup(region, key)
            subnet = ledger.region(region).subnets[0]
            role = nodes_role_name(config.session, seat)
            iam.ensure_role(prov.aws, role, trust=policies.ec2_trust_policy(),
                            policy=policies.emr_instance_policy(
                                session=config.session, bucket=ledger.state.bucket, seat=seat),
                            session=config.session, seat=seat)
            self._await_permission()
            return create_with_retry(prov.aws, region, config=config, seat=seat,
                                     log_uri=policies.cluster_log_uri(ledger.state.bucket, seat),
                                     subnet_id=subnet, job_flow_role=role,
                                     asked=lambda: self._asked(seat or ""))

        if config.emr.mode == "shared":
            shared = live.get("")
            if shared is None:
                counts: dict[str, int] = {}
                for s in self.seats:
                    counts[placement[s]] = counts.get(placement[s], 0) + 1
                region = max(sorted(counts), key=lambda r: counts[r])
                cid = make(None, region)
                self.created.append(cid)
                shared_id, shared_region = cid, region
            else:
                shared_id, shared_region = shared.cluster_id, shared.region
            for seat in self.seats:
                self._record(seat, shared_id, shared_region)
            return

        def per_seat(seat: str) -> None:
            try:
                found = live.get(seat)
                if found:
                    self._record(seat, found.cluster_id, found.region)
                    return
                region = placement[seat]
                cid = make(seat, region)
                self.created.append(cid)
                self._record(seat, cid, region)
            except AwsError as e:
                self.failed[seat] = f"cluster: {e.message}"

        with ThreadPoolExecutor(max_workers=IAM_THREADS) as pool:
            list(pool.map(per_seat, list(self.seats)))

    def _keep_one_each(self, existing: list[emr.Cluster]) -> dict[str, emr.Cluster]:
        """seat ("" for the shared one) -> its live cluster.

        A seat with more than one (RunJobFlow has no idempotency token: a create whose
        answer was lost is retried and makes a second) keeps the one the session state
        names, else the oldest; the others are terminated, as each bills by the hour and
        no seat's mrjob.conf names it.
        """
        wanted = {""} if self.prov.config.emr.mode == "shared" else set(self.seats)
        known = {st.cluster_id for st in self.prov.ledger.state.seats.values()}
        by_seat: dict[str, list[emr.Cluster]] = {}
        for c in existing:
            if c.state in emr.LIVE and c.seat in wanted:
                by_seat.setdefault(c.seat, []).append(c)
        live: dict[str, emr.Cluster] = {}
        extra: dict[str, list[str]] = {}
        for seat, found in by_seat.items():
            found.sort(key=lambda c: (c.cluster_id not in known, c.created, c.cluster_id))
            live[seat] = found[0]
            for c in found[1:]:
                extra.setdefault(c.region, []).append(c.cluster_id)
                self.duplicates.append(f"{seat or 'the session'}: EMR cluster {c.cluster_id}")
        for region, ids in extra.items():
            emr.terminate(self.prov.aws, region, ids)
        return live

    def _record(self, seat: str, cluster_id: str, region: str) -> None:
        st = self.prov.ledger.seat(seat)
        if st.cluster_id and st.cluster_id != cluster_id and st.bootstrap == "ok":
            self.prov.stale_confs.add(seat)  # a bootstrapped seat needs the new id
        self.prov.ledger.update_seat(seat, cluster_id=cluster_id, cluster_region=region,
                                     cluster_state="STARTING" if cluster_id in self.created
                                     else st.cluster_state)


def create_with_retry(aws: Aws, region: str, *, config: Config, seat: str | None, log_uri: str,
                      subnet_id: str, job_flow_role: str,
                      asked: Callable[[], None] | None = None) -> str:
    """run_job_flow, retried while a just-created role is not yet visible to EMR;
    ``asked()`` is called once the first attempt has been answered, either way."""
    service_role = policies.emr_service_role_names()[0]
    delay = 2.0
    for attempt in range(6):
        if attempt == 1 and asked is not None:
            asked()
        try:
            return emr.create(aws, region, session=config.session, seat=seat,
                              release=config.emr.release,
                              instance_type=config.emr.instance_type,
                              instance_count=config.emr.instance_count,
                              idle_minutes=config.emr.idle_timeout_minutes, log_uri=log_uri,
                              subnet_id=subnet_id, job_flow_role=job_flow_role,
                              service_role=service_role)
        except AwsError as e:
            if attempt == 5 or "role" not in e.message.lower() and \
                    "profile" not in e.message.lower():
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def find_all(aws: Aws, session: str, regions: Iterable[str]) -> list[emr.Cluster]:
    regions = list(dict.fromkeys(regions))
    if not regions:
        return []
    with ThreadPoolExecutor(max_workers=len(regions)) as pool:
        lists = list(pool.map(lambda r: emr.find(aws, r, session), regions))
    # One cluster id lives in one region; an emulator that lists every region's
    # clusters everywhere must not make one cluster look like two.
    first: dict[str, emr.Cluster] = {}
    for c in (c for lst in lists for c in lst):
        first.setdefault(c.cluster_id, c)
    return list(first.values())


# -- hooks called by the provision pipeline ------------------------------------------------
def start_alongside(prov: Provisioner, seats: dict[str, Seat]) -> ClusterJob:
    """Before launch: the clusters' job starts (they take longest to come up), the seats'
    profiles are made (the launch needs them), the clusters are asked for, and they
    come up in the background while the machines launch and bootstrap."""
    prov.stale_confs = set()
    job = ClusterJob(prov, seats).start(create_now=False)
    try:
        prov.instance_profiles = ensure_seat_access(prov.aws, prov.config, prov.ledger, seats)
    except BaseException:
        job.cancel()  # no cluster for a class whose machines will not launch
        raise
    job.allow_create()
    job.requested.wait(HEAD_START_SECONDS)
    return job


def finish(prov: Provisioner, seats: dict[str, Seat], summary: Summary) -> None:
    job = prov.cluster_job
    if job is None:
        return
    job.wait_ids()
    for seat, why in job.failed.items():
        summary.failed.setdefault(seat, why)
    summary.duplicates_removed.extend(job.duplicates)
    stale = [s for s in prov.stale_confs if s not in summary.failed]
    summary.failed.update(push_confs(prov.config, prov.ledger, prov.out, stale))


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?(.*)$")


def seat_pip_packages(config: Config) -> list[str]:
    """The config's pip packages, with mrjob's ``aws`` extra when the class has clusters.

    A plain ``mrjob`` installs without boto3, and its EMR runner then stops with "You
    must install boto3 to connect to EMR": `python job.py -r emr` must work on a seat
    with the config's defaults, so ``mrjob`` becomes ``mrjob[aws]`` (version kept).
    """
    out: list[str] = []
    for pkg in config.bootstrap.pip_packages:
        m = _REQUIREMENT.match(pkg)
        if config.emr.mode != "none" and m and m.group(1).lower() == "mrjob":
            extras = [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]
            if "aws" not in (e.lower() for e in extras):
                pkg = f"{m.group(1)}[{','.join([*extras, 'aws'])}]{m.group(3)}"
        out.append(pkg)
    return out


def mrjob_conf(prov: Provisioner, seat: str) -> str:
    return seat_conf(prov.config, prov.ledger, seat)


def seat_conf(config: Config, ledger: Ledger, seat: str) -> str:
    st = ledger.seat(seat)
    bucket = ledger.state.bucket
    return render("mrjob.conf.j2", seat=seat, region=st.cluster_region or st.region,
                  cluster_id=st.cluster_id if config.emr.mode != "none" else "",
                  cloud_tmp_dir=f"s3://{bucket}/{policies.seat_prefix(seat)}tmp/"
                  if bucket else "").rstrip("\n")


def push_confs(config: Config, ledger: Ledger, out: Path, seats: Iterable[str]
               ) -> dict[str, str]:
    """Write each seat's ~/.mrjob.conf over SSH (after a cluster changed)."""
    from labkit.access import target_for

    targets = [target_for(config, ledger, out, s) for s in seats]

    def work(target: ssh.Target) -> None:
        conn = ssh.wait_for_ssh(target, deadline=time.monotonic() + config.ssh_wait_seconds)
        try:
            text = seat_conf(config, ledger, target.seat) + "\n"
            with conn.sftp().open(".mrjob.conf.tmp", "w") as f:
                f.write(text)
            conn.run("mv ~/.mrjob.conf.tmp ~/.mrjob.conf", hide=True, in_stream=False)
        finally:
            conn.close()

    outcomes = ssh.fan_out(targets, work, parallel=config.parallel)
    return {s: f"updating ~/.mrjob.conf: {o.reason}" for s, o in outcomes.items() if not o.ok}


# -- lifecycle --------------------------------------------------------------------------------
def _cluster_regions(config: Config, ledger: Ledger) -> list[str]:
    return list(dict.fromkeys(list(config.regions) + [
        s.cluster_region for s in ledger.state.seats.values() if s.cluster_region]))


def states(aws: Aws, ledger: Ledger) -> dict[str, str]:
    """cluster id -> state, for `labkit status` (one listing per region)."""
    regions = sorted({s.cluster_region for s in ledger.state.seats.values() if s.cluster_region})
    out: dict[str, str] = {}
    for c in find_all(aws, ledger.state.session, regions):
        out[c.cluster_id] = c.state
    for s in ledger.state.seats.values():
        if s.cluster_id and s.cluster_id not in out:
            out[s.cluster_id] = "TERMINATED"
    return out


def stop_all(aws: Aws, config: Config, ledger: Ledger, console: Console) -> int:
    """EMR clusters cannot stop: terminate them; `labkit start` makes new ones."""
    found = [c for c in find_all(aws, config.session, _cluster_regions(config, ledger))
             if c.state in emr.LIVE]
    by_region: dict[str, list[str]] = {}
    for c in found:
        by_region.setdefault(c.region, []).append(c.cluster_id)
    for region, ids in by_region.items():
        emr.terminate(aws, region, ids)
    if ledger.path.exists():  # a stop without a session folder must not create one
        with ledger.editing() as st:
            for seat in st.seats.values():
                if seat.cluster_id:
                    seat.cluster_state = "TERMINATING"
    return len(found)


def start_all(aws: Aws, config: Config, ledger: Ledger, out: Path, console: Console,
              seats: Iterable[str] | None = None) -> dict[str, str]:
    """New clusters for a new class day, and every seat's ~/.mrjob.conf names its new one.

    ``seats``: the seats to serve (default all); a seat without a machine gets no cluster
    to bill for until `labkit provision` gives it a machine again."""
    if config.emr.mode == "none":
        return {}
    from labkit.provision import Provisioner

    prov = Provisioner.for_session(config, ledger, out, aws)
    wanted = {name: None for name in (ledger.state.seats if seats is None else seats)}
    prov.stale_confs = set()
    job = ClusterJob(prov, wanted)  # type: ignore[arg-type]
    job.start().wait_ids()
    failures = dict(job.failed)
    changed = [s for s in prov.stale_confs if s not in failures]
    failures.update(push_confs(config, ledger, out, changed))
    if job.created:
        console.print(f"created {len(job.created)} EMR clusters; {len(changed)} seats' "
                      "~/.mrjob.conf now name their new cluster")
    return failures
