"""The first stages every command shares: inputs checked, AWS surveyed, a plan made.

roster -> seats -> placement (quota-aware) -> resources and cost. AWS is only read here
(quotas, usage, prices), and only when not offline; a failed read makes the plan say
"unknown", never stops it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from labkit import plan as planning
from labkit.config import Config
from labkit.roster import Roster, load_roster


@dataclass
class PlanResult:
    config: Config
    roster: Roster
    placement: planning.Placement
    rooms: dict[str, planning.RegionRoom]
    resources: list[planning.Resource]
    cost_lines: list = field(default_factory=list)  # list[pricing.CostLine]
    hourly_usd: float | None = None
    price_note: str = ""
    offline: bool = True
    notes: list[str] = field(default_factory=list)

    def over_budget(self) -> bool:
        """Above ``budget.max_hourly_usd`` for sure. A total with unknown lines is a lower
        bound (``pricing.Total``): above the budget it is over; below, nobody can tell,
        and ``report`` says so rather than "within budget"."""
        return self.hourly_usd is not None and self.hourly_usd > self.config.budget.max_hourly_usd


def survey_rooms(config: Config, aws: object, regions: list[str]) -> dict[str, planning.RegionRoom]:
    """Each region's room for seats, from its vCPU quota and current use, in parallel."""
    from labkit.aws import ec2
    from labkit.aws.session import Aws

    assert isinstance(aws, Aws)

    def one(region: str) -> planning.RegionRoom:
        per_seat = ec2.instance_vcpus(aws, region, config.instance_type)
        if per_seat is None:
            from labkit.pricing import PriceBook

            per_seat = PriceBook.shipped().vcpus(config.instance_type)
        quota = ec2.vcpu_quota(aws, region)
        used = ec2.vcpus_in_use(aws, region) if quota is not None else None
        return planning.room_from_quota(region, quota, used, per_seat)

    with ThreadPoolExecutor(max_workers=max(1, len(regions))) as pool:
        return dict(zip(regions, pool.map(one, regions)))


def make_plan(config: Config, roster_path: Path, *, offline: bool, profile: str | None = None,
              existing: dict[str, str] | None = None) -> PlanResult:
    roster = load_roster(roster_path)
    regions = list(dict.fromkeys(list(config.regions) + [s.region for s in roster.seats
                                                         if s.region]))
    rooms: dict[str, planning.RegionRoom] = {}
    notes: list[str] = []
    aws = None
    if not offline:
        from labkit.aws.session import Aws

        aws = Aws(profile, quick=True)
        if aws.has_credentials():
            rooms = survey_rooms(config, aws, regions)
        else:
            notes.append("no AWS credentials found: quotas and live prices not read "
                         "(use --offline to skip this look-up)")
            aws = None
    placement = planning.place(roster.seats, config.regions, rooms, existing)
    result = PlanResult(config=config, roster=roster, placement=placement, rooms=rooms,
                        resources=planning.resources(config, roster, placement),
                        offline=offline or aws is None, notes=notes)
    _add_cost(result, aws)
    return result


def _add_cost(result: PlanResult, aws: object | None) -> None:
    """The class's hourly cost: machines, their disks and public addresses, clusters.

    Disks and public IPv4 addresses are small per seat but billed for every hour a seat
    exists (disks even while stopped), so the plan shows them rather than surprise.
    """
    from labkit import pricing
    from labkit.aws.inventory import PUBLIC_IPV4_USD_HOUR

    config = result.config
    book = pricing.PriceBook.shipped()
    emr_types = [config.emr.instance_type] if config.emr.mode != "none" else []
    if aws is not None:
        from labkit.aws.session import Aws

        assert isinstance(aws, Aws)
        book = book.with_live_prices(lambda region: aws.session(),
                                     list(result.placement.counts(config.regions)),
                                     [config.instance_type, *emr_types],
                                     emr_instance_types=emr_types)
    counts = {r: n for r, n in result.placement.counts(config.regions).items() if n}
    lines, total = pricing.class_cost(book, counts, config.instance_type, config.emr.mode,
                                      config.emr.instance_type, config.emr.instance_count,
                                      volume_gb=config.volume_gb)
    # Every seat has a public IPv4 address (AWS bills each by the hour since 2024-02),
    # listed after its region's other lines.
    with_ipv4: list[pricing.CostLine] = []
    for i, line in enumerate(lines):
        with_ipv4.append(line)
        last_of_region = i + 1 == len(lines) or lines[i + 1].region != line.region
        if last_of_region and line.region in counts:
            n = counts[line.region]
            with_ipv4.append(pricing.CostLine(
                line.region, f"{n} × public IPv4 address", n, PUBLIC_IPV4_USD_HOUR,
                n * PUBLIC_IPV4_USD_HOUR, "aws.amazon.com/vpc/pricing"))
    ipv4 = sum(n for n in counts.values()) * PUBLIC_IPV4_USD_HOUR
    if total is not None:
        total = pricing.Total(total + ipv4, total.unpriced)
    elif lines:  # no other price known: the addresses alone, a lower bound
        total = pricing.Total(ipv4, [f"{x.region}: {x.what}" for x in lines])
    result.cost_lines = with_ipv4
    result.hourly_usd = total
    result.price_note = f"prices: {book.describe()}"
