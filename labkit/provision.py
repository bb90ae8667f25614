"""``labkit provision``: roster -> working seats -> credentials sheet. Safe to re-run.

Stages: plan -> secrets saved -> find what exists (by tag) -> per-region set-up ->
launch what is missing (spilling over on capacity) -> as each machine runs: bootstrap
over SSH (clusters start alongside) -> outputs. Every stage is "find by tag, create what
is missing", so a run killed at any moment converges when run again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labkit import bootstrap as ssh
from labkit import outputs, secrets
from labkit.access import target_for
from labkit.aws import addresses, alarms, ec2, s3
from labkit.aws.errors import aws_call
from labkit.aws.session import Aws
from labkit.config import Config
from labkit.errors import AwsError, CapacityError, QuotaError, RefusedError
from labkit.pipeline import PlanResult, make_plan
from labkit.plan import next_region
from labkit.roster import Seat
from labkit.state import Ledger
from labkit.templating import render

if TYPE_CHECKING:
    from labkit.clusters import ClusterJob

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0


@dataclass
class Summary:
    plan: PlanResult
    out: Path
    launched: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    bootstrapped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)  # seat -> why it is elsewhere
    password_reset: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)  # were stopped; started again
    readdressed: list[str] = field(default_factory=list)  # their address changed: reprint
    duplicates_removed: list[str] = field(default_factory=list)
    api_calls: int = 0


# (seat, "launched" | "ssh" | "ok" | "failed"), (seat, "found" | "ready") for a seat a
# re-run finds with a machine / already set up, ("", "stage:<what labkit does now>").
Event = Callable[[str, str], None]


def session_paths(out: Path) -> dict[str, Path]:
    return {"state": out / "state.json", "key": out / "id_ed25519", "logs": out / "logs"}


def ensure_session_key(out: Path, session: str) -> secrets.KeyPair:
    """The session's login key: generated once, kept at <out>/id_ed25519 (0600)."""
    from labkit.files import write_private

    key_path = out / "id_ed25519"
    pub_path = out / "id_ed25519.pub"
    if key_path.exists() and pub_path.exists():
        return secrets.KeyPair(key_path.read_text(), pub_path.read_text().strip())
    pair = secrets.new_ed25519(f"labkit-{session}")
    write_private(key_path, pair.private_openssh)
    write_private(pub_path, pair.public_openssh + "\n", mode=0o644)
    return pair


class Provisioner:
    def __init__(self, config: Config, roster_path: Path, out: Path, *, profile: str | None,
                 allow_over_budget: bool = False, on_event: Event | None = None,
                 ssh_wait_seconds: float | None = None) -> None:
        self.config = config
        self.roster_path = roster_path
        self.out = out
        self.aws = Aws(profile)
        self.allow_over_budget = allow_over_budget
        self.on_event = on_event or (lambda seat, what: None)
        self.ssh_wait_seconds = ssh_wait_seconds or float(config.ssh_wait_seconds)
        self._region_lock = threading.Lock()
        self._region_ready: dict[str, threading.Event] = {}
        self._region_error: dict[str, Exception] = {}
        # What EC2 refused during this run: (region, subnet) -> code, region -> code.
        self._zone_full: dict[tuple[str, str], str] = {}
        self._region_over_quota: dict[str, str] = {}
        self._zone_names: dict[tuple[str, str], str] = {}
        # Filled as the pipeline runs (and by labkit.clusters' hooks).
        self.ledger: Ledger
        self.plan_placement_for_clusters: dict[str, str] = {}
        self.instance_profiles: dict[str, str] = {}
        self.stale_confs: set[str] = set()
        self.cluster_job: ClusterJob | None = None
        self.materials_url = self.materials_sha = self.materials_name = ""

    @classmethod
    def for_session(cls, config: Config, ledger: Ledger, out: Path, aws: Aws) -> Provisioner:
        """A provisioner bound to an existing session (for `labkit start`)."""
        prov = cls(config, Path("-"), out, profile=aws.profile)
        prov.aws = aws
        prov.ledger = ledger
        prov.plan_placement_for_clusters = {
            name: st.cluster_region or st.region for name, st in ledger.state.seats.items()}
        return prov

    # -- the pipeline -------------------------------------------------------------------
    def run(self) -> Summary:
        config = self.config
        state_path = self.out / "state.json"
        ledger = Ledger.open(state_path, config.session) if state_path.exists() else None
        existing_regions = {s.seat: s.region for s in ledger.state.seats.values()
                            if s.instance_id and s.region} if ledger else {}
        # Inputs are checked (and the plan refused) before anything is written.
        result = make_plan(config, self.roster_path, offline=False, profile=self.aws.profile,
                           existing=existing_regions)
        self._refuse_bad_plan(result)
        self.out.mkdir(parents=True, exist_ok=True, mode=0o700)
        ledger = ledger or Ledger.open(state_path, config.session)
        self.ledger = ledger
        summary = Summary(plan=result, out=self.out)
        seats = {s.name: s for s in result.roster.seats}

        session_key = ensure_session_key(self.out, config.session)
        account = self.aws.account_id()
        with ledger.editing() as st:
            st.extra["students"] = {seat.name: [asdict(p) for p in seat.students]
                                    for seat in result.roster.seats}
            st.account_id = account
            st.bucket = st.bucket or s3.bucket_name(config.session, account)

        self._stage("looking for the session's machines")
        found = self._discover(seats, summary)
        self._ensure_secrets(seats, found, summary)
        for name in found:
            self.on_event(name, "ready" if self.ledger.seat(name).bootstrap == "ok"
                          else "found")
        self._stage("preparing the session's bucket, alarms and regions")
        self._bucket_and_materials()
        alarms.ensure_billing_alarms(self.aws, config.session, config.budget.alarm_usd,
                                     config.budget.alarm_email)
        self.plan_placement_for_clusters = {
            name: (ledger.seat(name).region if name in found else
                   result.placement.region_of[name]) for name in seats}
        self.hooks_before_launch(seats)

        to_launch = [name for name in seats if name not in found]
        for name in seats:
            if name in found:
                summary.reused.append(name)
        launch_regions = {result.placement.region_of[n] for n in to_launch}
        with ThreadPoolExecutor(max_workers=max(1, len(launch_regions))) as pool:
            for region in launch_regions:
                pool.submit(self._region_setup_safe, region, session_key.public_openssh)
        self._start_stopped(found, summary)
        self._stage(f"launching {len(to_launch)} machines, setting seats up over SSH"
                    if to_launch else "setting seats up over SSH")
        self._launch_and_bootstrap(seats, to_launch, summary)
        if config.emr.mode != "none":
            self._stage("waiting for the clusters")
        self.hooks_after(seats, summary)
        self._stage("writing credentials.csv, ssh_config and handouts.pdf")
        outputs.write_all(self.config, ledger, result.roster, self.out)
        summary.api_calls = sum(self.aws.calls.values())
        return summary

    def _stage(self, what: str) -> None:
        self.on_event("", f"stage:{what}")

    def hooks_before_launch(self, seats: dict[str, Seat]) -> None:
        """Things that must exist before machines launch (IAM profiles, clusters)."""
        from labkit import clusters

        self.cluster_job = clusters.start_alongside(self, seats)

    def hooks_after(self, seats: dict[str, Seat], summary: Summary) -> None:
        from labkit import clusters

        clusters.finish(self, seats, summary)

    def _refuse_bad_plan(self, result: PlanResult) -> None:
        if result.placement.unplaced:
            raise RefusedError(f"{len(result.placement.unplaced)} seats fit in no region "
                               "(vCPU quotas are full); nothing was created",
                               hint="add a region to `regions`, or ask AWS for a higher "
                                    "vCPU quota, then run again")
        if result.over_budget() and not self.allow_over_budget:
            raise RefusedError(
                f"the plan costs ${result.hourly_usd:,.2f}/hour, above budget.max_hourly_usd "
                f"= ${self.config.budget.max_hourly_usd:,.2f}; nothing was created",
                hint="see `labkit plan`; raise the budget in labkit.toml, use fewer or "
                     "smaller machines, or pass --allow-over-budget")

    # -- what already exists ----------------------------------------------------------------
    def _regions_to_search(self, seats: dict[str, Seat]) -> list[str]:
        """Configured regions, regions in state, and pinned ones: without state.json a
        pinned seat's machine may be in a region no longer in `regions`."""
        regions = list(self.config.regions)
        regions += [s.region for s in self.ledger.state.seats.values() if s.region]
        regions += [s.region for s in seats.values() if s.region]
        return list(dict.fromkeys(regions))

    def _discover(self, seats: dict[str, Seat], summary: Summary) -> dict[str, ec2.Instance]:
        """Every seat's live machine, found by tag; extra machines for one seat are removed."""
        regions = self._regions_to_search(seats)
        with ThreadPoolExecutor(max_workers=len(regions)) as pool:
            lists = list(pool.map(lambda r: ec2.find_instances(self.aws, r, self.config.session),
                                  regions))
        by_seat: dict[str, list[ec2.Instance]] = {}
        for inst in (i for lst in lists for i in lst):
            if inst.seat:
                by_seat.setdefault(inst.seat, []).append(inst)
        found: dict[str, ec2.Instance] = {}
        for seat, insts in by_seat.items():
            known = self.ledger.state.seats.get(seat)
            rank = {"running": 0, "pending": 1, "stopping": 2, "stopped": 3}
            insts.sort(key=lambda i: (0 if known and i.instance_id == known.instance_id else 1,
                                      rank.get(i.state, 9), i.launch_time))
            keep, extra = insts[0], insts[1:]
            if keep.state == "shutting-down":
                continue
            found[seat] = keep
            for dup in extra:
                if dup.state != "shutting-down":
                    ec2.terminate(self.aws, dup.region, [dup.instance_id])
                    summary.duplicates_removed.append(f"{seat}: {dup.instance_id}")
        for seat, inst in found.items():
            self.ledger.update_seat(seat, region=inst.region, instance_id=inst.instance_id,
                                    instance_state=inst.state,
                                    host=self._address(inst) or self.ledger.seat(seat).host,
                                    private_ip=inst.private_ip)
        return found

    def _address(self, inst: ec2.Instance) -> str:
        return inst.private_ip if self.config.connect == "private" else inst.public_ip

    def _ensure_secrets(self, seats: dict[str, Seat], found: dict[str, ec2.Instance],
                        summary: Summary) -> None:
        """Passwords and host keys are on disk before any machine can receive them."""
        with self.ledger.editing() as st:
            for name in seats:
                seat = st.seats.get(name) or self.ledger.seat(name)
                if not seat.host_key_private and name in found:
                    recovered = self._host_key_from_user_data(found[name])
                    if recovered:
                        seat.host_key_private, seat.host_key_public = recovered
                if not seat.host_key_private:
                    pair = secrets.new_ed25519(f"{self.config.session}/{name}")
                    seat.host_key_private, seat.host_key_public = (pair.private_openssh,
                                                                   pair.public_openssh)
                if seat.password_reset and name not in summary.password_reset:
                    # Reset in an earlier run that did not get to set it on the machine.
                    summary.password_reset.append(name)
                if not seat.password:
                    seat.password = secrets.new_password()
                    seat.password_hash = secrets.password_hash(seat.password)
                    if name in found:
                        # The machine exists but its password was lost with state.json.
                        seat.password_reset = True
                        seat.bootstrap = "pending"
                        summary.password_reset.append(name)

    def _host_key_from_user_data(self, inst: ec2.Instance) -> tuple[str, str] | None:
        import yaml

        try:
            with aws_call("ec2", "reading a machine's user-data", region=inst.region):
                resp = self.aws.client("ec2", inst.region).describe_instance_attribute(
                    InstanceId=inst.instance_id, Attribute="userData")
            text = base64.b64decode(resp.get("UserData", {}).get("Value", "")).decode()
            keys = yaml.safe_load(text).get("ssh_keys", {})
            return keys["ed25519_private"], keys["ed25519_public"]
        except (AwsError, ValueError, KeyError, AttributeError, yaml.YAMLError):
            return None

    # -- per region -----------------------------------------------------------------------
    def _region_setup_safe(self, region: str, public_key: str) -> None:
        try:
            self.region_setup(region, public_key)
        except Exception as e:  # recorded; seats in the region fail or move on
            self._region_error[region] = e

    def region_setup(self, region: str, public_key: str) -> None:
        """Key pair, security group, image, subnets: created once, found on re-run."""
        with self._region_lock:
            event = self._region_ready.get(region)
            owner = event is None
            if owner:
                event = self._region_ready[region] = threading.Event()
        assert event is not None
        if not owner:
            event.wait()
            if region in self._region_error:
                raise self._region_error[region]
            return
        try:
            rs = self.ledger.region(region)
            key_name = ec2.ensure_key_pair(self.aws, region, f"labkit-{self.config.session}",
                                           public_key, self.config.session)
            group = ec2.ensure_security_group(self.aws, region, self.config.session,
                                              self.config.ssh_cidr)
            image = ec2.resolve_image(self.aws, region, self.config.image_for(region))
            found_subnets = ec2.default_subnets(self.aws, region)
            subnets = [s for s, _ in found_subnets]
            self._zone_names.update({(region, s): zone for s, zone in found_subnets})
            with self.ledger.editing():
                rs.key_name, rs.security_group_id, rs.image_id, rs.subnets = (
                    key_name, group, image, subnets)
        except Exception as e:
            self._region_error[region] = e
            raise
        finally:
            event.set()

    def _bucket_and_materials(self) -> None:
        st = self.ledger.state
        self.bucket_region = self.config.regions[0]
        s3.ensure_bucket(self.aws, self.bucket_region, st.bucket, self.config.session)
        self.materials_url = ""
        self.materials_sha = ""
        self.materials_name = ""
        if self.config.bootstrap.materials:
            path = self.config.resolve_path(self.config.bootstrap.materials)
            self.materials_sha = hashlib.sha256(path.read_bytes()).hexdigest()
            key = s3.upload_materials(self.aws, self.bucket_region, st.bucket, path,
                                      self.materials_sha)
            self.materials_url = s3.presigned_get(self.aws, self.bucket_region, st.bucket, key)
            self.materials_name = path.name

    # -- machines ---------------------------------------------------------------------------
    def _start_stopped(self, found: dict[str, ec2.Instance], summary: Summary) -> None:
        """Start the seats' stopped machines and record where they now answer.

        A started machine usually has a new public address; the seats already set up are
        not bootstrapped again, so their address is read here or the sheet keeps the old.
        """
        by_region: dict[str, list[str]] = {}
        for inst in found.values():
            if inst.state in ("stopped", "stopping"):
                by_region.setdefault(inst.region, []).append(inst.instance_id)
        if not by_region:
            return
        self._stage(f"starting {sum(len(v) for v in by_region.values())} stopped machines")

        def one(region: str) -> list[ec2.Instance]:
            ids = by_region[region]
            client = self.aws.client("ec2", region)
            with aws_call("ec2", "waiting for machines to stop", region=region):
                client.get_waiter("instance_stopped").wait(
                    InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 60})
            ec2.start(self.aws, region, ids)
            with aws_call("ec2", "waiting for started machines", region=region):
                client.get_waiter("instance_running").wait(
                    InstanceIds=ids, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
            return ec2.find_instances(self.aws, region, self.config.session)

        with ThreadPoolExecutor(max_workers=len(by_region)) as pool:
            now = {i.instance_id: i for lst in pool.map(one, by_region) for i in lst}
        for seat, inst in found.items():
            if inst.instance_id not in {i for ids in by_region.values() for i in ids}:
                continue
            fresh = now.get(inst.instance_id)
            if fresh is None:
                continue
            old = self.ledger.seat(seat).host
            host = self._address(fresh) or old
            self.ledger.update_seat(seat, instance_state=fresh.state, host=host,
                                    private_ip=fresh.private_ip)
            summary.started.append(seat)
            if old and host != old:
                summary.readdressed.append(seat)

    def instance_profile_arn(self, seat: str) -> str:
        return self.instance_profiles.get(seat, "")

    def _launch_one(self, seat: Seat, first_region: str) -> str:
        """Launch a seat's machine; on capacity try the next zone, then the next region.

        A zone that said "no capacity", or a region that said "over quota", is skipped by
        the seats that come after it in this run: EC2's answer holds for minutes, and a
        class of 100 must not ask it 100 times before moving on.
        """
        tried: set[str] = set()
        region: str | None = first_region
        refusals: dict[str, str] = {}  # region -> why it took no machine
        ledger_seat = self.ledger.seat(seat.name)
        user_data = render("user-data.yaml.j2", session=self.config.session, seat=seat.name,
                           host_key_private=ledger_seat.host_key_private.strip(),
                           host_key_public=ledger_seat.host_key_public)
        key = (self.out / "id_ed25519.pub").read_text().strip()
        while region is not None:
            tried.add(region)
            try:
                self.region_setup(region, key)
                rs = self.ledger.region(region)
                if region in self._region_over_quota:
                    raise QuotaError("", code=self._region_over_quota[region], region=region)
                for subnet in rs.subnets:
                    if (region, subnet) in self._zone_full:
                        continue
                    try:
                        inst = self._launch_retrying_iam(
                            self.aws, region, session=self.config.session, seat=seat.name,
                            image_id=rs.image_id, instance_type=self.config.instance_type,
                            key_name=rs.key_name, security_group_id=rs.security_group_id,
                            subnet_id=subnet, user_data=user_data,
                            volume_gb=self.config.volume_gb,
                            instance_profile_arn=self.instance_profile_arn(seat.name))
                    except CapacityError as e:
                        self._zone_full[(region, subnet)] = e.code
                        continue
                    note = self._placement_note(first_region, region, refusals)
                    self.ledger.update_seat(seat.name, region=region,
                                            instance_id=inst.instance_id,
                                            instance_state=inst.state,
                                            host=self._address(inst),
                                            private_ip=inst.private_ip,
                                            placement_note=note, bootstrap="pending",
                                            error="")
                    return region
                refusals[region] = self._no_capacity(region, rs.subnets)
            except QuotaError as e:
                self._region_over_quota.setdefault(region, e.code)
                refusals[region] = f"{region} is at its vCPU quota ({e.code})"
            except AwsError as e:
                refusals[region] = f"{region}: {e.message}"
            if seat.region:  # pinned: never moved
                break
            region = next_region(self.config.regions, tried)
        raise AwsError("no region could launch it: " + "; ".join(refusals.values())
                       + ("" if seat.region else f" (tried {', '.join(sorted(tried))})"))

    def _no_capacity(self, region: str, subnets: list[str]) -> str:
        codes = sorted({self._zone_full.get((region, s), "") for s in subnets} - {""})
        zones = [self._zone_names.get((region, s), s) for s in subnets]
        return (f"{region} had no capacity for {self.config.instance_type} "
                f"({'/'.join(codes) or 'no answer'} in {', '.join(zones)})")

    @staticmethod
    def _placement_note(first_region: str, region: str, refusals: dict[str, str]) -> str:
        """Why a seat is not where the plan put it, for the summary and state.json."""
        if region == first_region:
            return ""
        return f"moved from {first_region} to {region}: " + "; ".join(refusals.values())

    def _launch_retrying_iam(self, aws: Aws, region: str, **kwargs: object) -> ec2.Instance:
        """A just-created instance profile takes seconds to be visible to EC2: retry that
        one error, a bounded number of times, with backoff."""
        delay = 2.0
        for attempt in range(7):
            try:
                return ec2.launch(aws, region, **kwargs)  # type: ignore[arg-type]
            except AwsError as e:
                iam_not_ready = e.code == "InvalidParameterValue" and (
                    "iamInstanceProfile" in e.message or "nstance profile" in e.message)
                if not iam_not_ready or attempt == 6:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 20.0)
        raise AssertionError("unreachable")

    def _launch_and_bootstrap(self, seats: dict[str, Seat], to_launch: list[str],
                              summary: Summary) -> None:
        placement = self.plan_placement = summary.plan.placement
        failed = summary.failed
        submitted: set[str] = set()
        boot_pool = ThreadPoolExecutor(max_workers=self.config.parallel)
        futures: dict[str, Future[ssh.Outcome]] = {}
        launch_done = threading.Event()
        lock = threading.Lock()

        def launch(name: str) -> None:
            try:
                region = self._launch_one(seats[name], placement.region_of[name])
                summary.launched.append(name)
                if region != placement.region_of[name]:
                    summary.moved[name] = self.ledger.seat(name).placement_note
                self.on_event(name, "launched")
            except Exception as e:  # one seat's launch never stops the others, or the wait
                if not isinstance(e, AwsError):
                    log.exception("launch of %s", name)
                why = e.message if isinstance(e, AwsError) else f"{type(e).__name__}: {e}"
                with lock:
                    failed[name] = f"launch: {why}"
                self.ledger.update_seat(name, bootstrap="failed", error=failed[name])
                self.on_event(name, "failed")

        launch_pool = ThreadPoolExecutor(max_workers=min(16, max(1, len(to_launch))))
        launch_futures = [launch_pool.submit(launch, n) for n in to_launch]

        def launches_finished() -> None:
            # Set whatever happens: the loop below ends only once it is.
            try:
                for f in launch_futures:
                    f.exception()
            finally:
                launch_done.set()

        threading.Thread(target=launches_finished, daemon=True).start()
        wait_deadline = time.monotonic() + self.ssh_wait_seconds + 300
        self._await_cluster_ids()
        while True:
            pending = [n for n in seats if n not in submitted and n not in failed
                       and self.ledger.seat(n).bootstrap != "ok"]
            if launch_done.is_set() and not pending:
                break
            if pending:
                self._refresh(pending)
            for name in pending:
                st = self.ledger.seat(name)
                if st.instance_state == "running" and st.host:
                    submitted.add(name)
                    futures[name] = boot_pool.submit(self._bootstrap_one, name)
            if time.monotonic() > wait_deadline and launch_done.is_set():
                for name in pending:
                    if name not in submitted:
                        failed[name] = (f"machine never reached 'running' (last state "
                                        f"{self.ledger.seat(name).instance_state or 'unknown'})")
                        self.on_event(name, "failed")
                break
            time.sleep(POLL_SECONDS if pending else 0.2)
        launch_pool.shutdown()
        for name, fut in futures.items():
            outcome = fut.result()
            if outcome.ok:
                summary.bootstrapped.append(name)
            else:
                failed[name] = outcome.reason
        boot_pool.shutdown()
        for name in seats:
            st = self.ledger.seat(name)
            if name not in failed and st.bootstrap == "ok" and name not in summary.bootstrapped:
                summary.bootstrapped.append(name)

    def _await_cluster_ids(self) -> None:
        job = self.cluster_job
        if job is not None:
            job.wait_ids()

    def _refresh(self, names: list[str]) -> None:
        """One describe per region for all pending seats there (batched, never per seat)."""
        regions = {self.ledger.seat(n).region for n in names if self.ledger.seat(n).region}
        if not regions:
            return
        with ThreadPoolExecutor(max_workers=len(regions)) as pool:
            lists = list(pool.map(lambda r: ec2.find_instances(self.aws, r, self.config.session),
                                  regions))
        by_id = {i.instance_id: i for lst in lists for i in lst}
        for name in names:
            st = self.ledger.seat(name)
            inst = by_id.get(st.instance_id)
            if inst is None:
                continue
            host = self._address(inst)
            if (self.config.stable_addresses and inst.state == "running"
                    and self.config.connect == "public" and not st.allocation_id):
                # Before the seat's first SSH, so every card prints the address it keeps.
                allocation, host = addresses.ensure_address(
                    self.aws, inst.region, session=self.config.session, seat=name,
                    instance_id=inst.instance_id)
                self.ledger.update_seat(name, allocation_id=allocation)
            if (inst.state, host, inst.private_ip) != (st.instance_state, st.host, st.private_ip):
                self.ledger.update_seat(name, instance_state=inst.state, host=host or st.host,
                                        private_ip=inst.private_ip)

    def target(self, name: str) -> ssh.Target:
        return target_for(self.config, self.ledger, self.out, name)

    def bootstrap_script(self, name: str) -> str:
        from labkit import clusters

        st = self.ledger.seat(name)
        b = self.config.bootstrap
        return render(
            "bootstrap.sh.j2", session=self.config.session, seat=name,
            apt_packages=list(dict.fromkeys(["python3-venv", *b.apt_packages])),
            pip_packages=clusters.seat_pip_packages(self.config),
            login_user=self.config.login_user,
            password_hash=st.password_hash, materials_url=self.materials_url,
            materials_sha256=self.materials_sha, materials_name=self.materials_name,
            mrjob_conf=self.mrjob_conf(name), commands=list(b.commands),
            aws_region=st.cluster_region or st.region,
            aws_keys=self.ledger.state.extra.get("access_keys", {}).get(name))

    def mrjob_conf(self, name: str) -> str:
        from labkit import clusters

        return clusters.mrjob_conf(self, name)

    def _bootstrap_one(self, name: str) -> ssh.Outcome:
        target = self.target(name)
        start = time.monotonic()
        try:
            conn = ssh.wait_for_ssh(target, deadline=time.monotonic() + self.ssh_wait_seconds)
            try:
                self.on_event(name, "ssh")
                ssh.run_script(conn, self.bootstrap_script(name),
                               self.out / "logs" / f"{name}.log")
            finally:
                conn.close()
            self.ledger.update_seat(name, bootstrap="ok", error="", password_reset=False)
            self.on_event(name, "ok")
            return ssh.Outcome(name, True, seconds=time.monotonic() - start)
        except ssh.SshFailure as e:
            reason = str(e)
        except Exception as e:  # one seat's surprise never stops the others
            log.exception("bootstrap of %s", name)
            reason = f"{type(e).__name__}: {e}"
        self.ledger.update_seat(name, bootstrap="failed", error=reason)
        self.on_event(name, "failed")
        return ssh.Outcome(name, False, reason, time.monotonic() - start)
