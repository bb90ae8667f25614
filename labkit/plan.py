"""Seats -> regions, and what a provision will create. Pure: no AWS calls in here.

What AWS says (quotas, usage, images, live prices) is read by the caller and passed in
as ``RegionRoom`` and a ``PriceBook``, so the placement rules can be tested and shown
without a network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labkit.config import Config
from labkit.roster import Roster, Seat


@dataclass(frozen=True)
class RegionRoom:
    """How many more seats a region can take, and why labkit thinks so."""

    region: str
    seats: int | None  # None: unknown, treated as unlimited
    reason: str


@dataclass
class Placement:
    region_of: dict[str, str] = field(default_factory=dict)  # seat -> region
    unplaced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def seats_in(self, region: str) -> list[str]:
        return [s for s, r in self.region_of.items() if r == region]

    def counts(self, regions: Sequence[str]) -> dict[str, int]:
        order = list(regions) + sorted(set(self.region_of.values()) - set(regions))
        return {r: len(self.seats_in(r)) for r in order if self.seats_in(r) or r in regions}


def place(seats: Sequence[Seat], regions: Sequence[str],
          room: Mapping[str, RegionRoom] | None = None,
          existing: Mapping[str, str] | None = None) -> Placement:
    """Put every seat in a region.

    Seats that already have a machine stay where it is (re-running never moves a seat);
    pinned seats go where pinned, room or not (with a note when there is none); the rest
    fill the regions in order of preference, each up to the room its quota leaves, and
    the seats that fit nowhere are listed as unplaced.

    A region's room counts the seats it can take *beyond* the machines already running
    there (``room_from_quota`` subtracts the vCPUs in use), so seats that already have a
    machine do not use it up a second time.
    """
    room = room or {}
    existing = existing or {}
    left: dict[str, int | None] = {r: None for r in regions}
    left.update({r: rr.seats for r, rr in room.items()})
    placement = Placement()

    def has_room(region: str) -> bool:
        free = left.get(region)
        return free is None or free > 0

    def take(region: str) -> None:
        free = left.get(region)
        if free is not None:
            left[region] = free - 1

    for seat in seats:
        if seat.name in existing:
            placement.region_of[seat.name] = existing[seat.name]
    for seat in seats:
        if seat.name in placement.region_of or not seat.region:
            continue
        placement.region_of[seat.name] = seat.region
        if not has_room(seat.region):
            placement.notes.append(f"seat {seat.name} is pinned to {seat.region}, "
                                   f"which has no quota room left; it may fail to launch")
        take(seat.region)
    for seat in seats:
        if seat.name in placement.region_of:
            continue
        region = next((r for r in regions if has_room(r)), None)
        if region is None:
            placement.unplaced.append(seat.name)
            continue
        placement.region_of[seat.name] = region
        take(region)
    spilled = [r for r in regions if placement.seats_in(r)]
    if len(spilled) > 1 and any(room.get(r) and room[r].seats is not None for r in regions):
        placement.notes.append("seats spill over to the next region when one is full")
    return placement


def next_region(regions: Sequence[str], tried: set[str]) -> str | None:
    """The most preferred region a seat has not tried yet (for launch-time spill-over)."""
    for region in regions:
        if region not in tried:
            return region
    return None


def room_from_quota(region: str, quota_vcpus: float | None, used_vcpus: int | None,
                    vcpus_per_seat: int | None) -> RegionRoom:
    """Turn the EC2 on-demand vCPU quota (L-1216C47A) and current use into seats."""
    if quota_vcpus is None or used_vcpus is None or not vcpus_per_seat:
        return RegionRoom(region, None, "quota unknown")
    free = max(0, int(quota_vcpus) - used_vcpus)
    seats = free // vcpus_per_seat
    return RegionRoom(region, seats,
                      f"vCPU quota {int(quota_vcpus)}, {used_vcpus} in use, "
                      f"{vcpus_per_seat} per seat: room for {seats}")


@dataclass(frozen=True)
class Resource:
    region: str  # "global" for IAM and friends
    what: str
    count: int


def resources(config: Config, roster: Roster, placement: Placement) -> list[Resource]:
    """What provision will create, in the instructor's words, region by region."""
    out: list[Resource] = []
    counts = placement.counts(config.regions)
    for region, n in counts.items():
        if not n:
            continue
        out.append(Resource(region, "key pair (the session's login key)", 1))
        out.append(Resource(region, "security group (SSH only)", 1))
        out.append(Resource(region, f"{config.instance_type} machines, "
                                    f"{config.volume_gb} GB disk each", n))
        if config.emr.mode == "per-seat":
            out.append(Resource(region, f"EMR clusters of {config.emr.instance_count} × "
                                        f"{config.emr.instance_type}", n))
        if config.stable_addresses:
            out.append(Resource(region, "Elastic IP addresses", n))
    if config.emr.mode == "shared":
        first = next((r for r, n in counts.items() if n), config.regions[0])
        out.append(Resource(first, f"shared EMR cluster of {config.emr.instance_count} × "
                                   f"{config.emr.instance_type}", 1))
    seats = len(roster.seats)
    out.append(Resource("global", "IAM role + instance profile per seat (no allocating rights)",
                        seats))
    if config.student_credentials == "access-keys":
        out.append(Resource("global", "IAM user with access key per seat", seats))
    out.append(Resource(config.regions[0], "S3 bucket for materials, logs, scratch", 1))
    if config.budget.alarm_usd:
        out.append(Resource("us-east-1", "billing alarms (+ one SNS topic)",
                            len(config.budget.alarm_usd)))
    return out
