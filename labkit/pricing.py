"""What a class costs per hour: a price table shipped with labkit, refreshed from the AWS
Price List API when AWS can be reached.

The table (``labkit/data/prices.json``) states its date, its sources and which entries
are estimates. A price labkit does not know is ``None`` (callers print "price unknown"),
never a crash and never a silent zero: a class total with an unknown line is a lower
bound and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Self

HOURS_PER_MONTH = 730  # AWS bills GB-months over an average month of 730 hours
LIVE = "price list api"
ESTIMATED = "estimated"
EMR_MODES = ("per-seat", "shared", "none")


@dataclass(frozen=True)
class Price:
    usd_per_hour: float
    source: str  # "table 2026-11-25" | "price list api" | "estimated"


@dataclass(frozen=True)
class _Entry:
    usd: float
    estimated: bool = False


Table = Mapping[str, Mapping[str, _Entry]]  # region -> instance type -> entry


class PriceBook:
    """Hourly prices by region and instance type: the shipped table, plus whatever was
    read live. Immutable: ``with_live_prices`` returns a new book."""

    def __init__(self, *, table_date: str, ec2: Table, emr_fee: Table,
                 gp3_gb_month: Mapping[str, _Entry], vcpus: Mapping[str, int],
                 description: str = "", live_ec2: Table | None = None,
                 live_emr_fee: Table | None = None, live_error: str = "") -> None:
        self.table_date = table_date
        self.description = description
        self._ec2 = ec2
        self._emr_fee = emr_fee
        self._gp3 = gp3_gb_month
        self._vcpus = vcpus
        self._live_ec2: Table = live_ec2 or {}
        self._live_emr_fee: Table = live_emr_fee or {}
        # Why live prices were not (all) read; "" when they were, or were never asked for.
        self.live_error = live_error

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def shipped(cls) -> PriceBook:
        text = resources.files("labkit").joinpath("data/prices.json").read_text("utf-8")
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str) -> PriceBook:
        data = json.loads(text)
        return cls(table_date=str(data["as_of"]),
                   description=str(data.get("description", "")),
                   ec2=_table(data.get("ec2", {})),
                   emr_fee=_table(data.get("emr_fee", {})),
                   gp3_gb_month={r: _entry(v) for r, v in
                                 data.get("ebs_gp3_gb_month", {}).items()},
                   vcpus={t: int(n) for t, n in data.get("vcpus", {}).items()})

    # -- look-ups --------------------------------------------------------------------

    @property
    def table_source(self) -> str:
        return f"table {self.table_date}"

    def ec2(self, region: str, instance_type: str) -> Price | None:
        """On-demand Linux USD/hour of one instance, or None when unknown."""
        live = self._live_ec2.get(region, {}).get(instance_type)
        if live is not None:
            return Price(live.usd, LIVE)
        return self._from_table(self._ec2, region, instance_type)

    def emr_fee(self, region: str, instance_type: str) -> Price | None:
        """The EMR charge per instance-hour, on top of the EC2 price."""
        live = self._live_emr_fee.get(region, {}).get(instance_type)
        if live is not None:
            return Price(live.usd, LIVE)
        return self._from_table(self._emr_fee, region, instance_type)

    def emr(self, region: str, instance_type: str) -> Price | None:
        """USD/hour of one instance of an EMR cluster: EC2 price + EMR fee."""
        ec2, fee = self.ec2(region, instance_type), self.emr_fee(region, instance_type)
        if ec2 is None or fee is None:
            return None
        return Price(ec2.usd_per_hour + fee.usd_per_hour, self._weakest(ec2, fee))

    def gp3_gb_month(self, region: str) -> Price | None:
        """EBS gp3 USD per GB-month (``usd_per_hour`` holds the monthly figure here)."""
        entry = self._gp3.get(region)
        if entry is None:
            return None
        return Price(entry.usd, ESTIMATED if entry.estimated else self.table_source)

    def disk(self, region: str, gb: int) -> Price | None:
        """USD/hour of one gp3 volume of ``gb`` GB."""
        month = self.gp3_gb_month(region)
        if month is None:
            return None
        return Price(month.usd_per_hour * gb / HOURS_PER_MONTH, month.source)

    def vcpus(self, instance_type: str) -> int | None:
        return self._vcpus.get(instance_type)

    def instance_types(self) -> list[str]:
        return list(self._vcpus)

    def regions(self) -> list[str]:
        return list(self._ec2)

    def live_count(self) -> int:
        return (sum(len(v) for v in self._live_ec2.values())
                + sum(len(v) for v in self._live_emr_fee.values()))

    def describe(self) -> str:
        """One line for `labkit plan`: where the prices come from."""
        text = f"AWS on-demand prices from labkit's table of {self.table_date}"
        n = self.live_count()
        if n:
            text += f"; {n} read live from the AWS Price List API"
        if self.live_error:
            text += f"; live prices not read: {self.live_error}"
        return text

    # -- live refresh ----------------------------------------------------------------

    def with_live_prices(self, session_factory: Callable[[str], Any], regions: Iterable[str],
                         instance_types: Iterable[str], *,
                         emr_instance_types: Iterable[str] = ()) -> PriceBook:
        """A book whose prices for these regions and types come from the AWS Price List
        API where it answers; the shipped table fills the rest.

        ``session_factory(region)`` returns a boto3-Session-like object, so the caller
        decides credentials, profile and endpoint. Never raises and never waits long:
        on any failure (no credentials, no network, AccessDenied, an emulator without
        the API) the prices already known are kept and ``live_error`` says why.
        """
        from labkit.aws import pricing_api

        wanted = list(dict.fromkeys(regions))
        ec2_types = list(dict.fromkeys(instance_types))
        emr_types = list(dict.fromkeys(emr_instance_types))
        live_ec2 = _copy(self._live_ec2)
        live_fee = _copy(self._live_emr_fee)
        error = ""
        try:
            client = pricing_api.client(session_factory(pricing_api.PRICING_REGION))
            for kind, types, fetch, into in (
                    ("EC2", ec2_types, pricing_api.ec2_on_demand, live_ec2),
                    ("EMR", emr_types, pricing_api.emr_fee, live_fee)):
                for instance_type in types:
                    by_region = fetch(client, instance_type)
                    for region in wanted:
                        if region in by_region:
                            into.setdefault(region, {})[instance_type] = _Entry(
                                by_region[region])
        except Exception as e:  # noqa: BLE001 - a price refresh must never stop a plan
            error = _reason(e)
        if not error and wanted and (ec2_types or emr_types):
            missing = [f"{t} in {r}" for t in ec2_types for r in wanted
                       if t not in live_ec2.get(r, {})]
            missing += [f"EMR {t} in {r}" for t in emr_types for r in wanted
                        if t not in live_fee.get(r, {})]
            if missing:
                shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
                error = f"the Price List API had no price for {shown}"
        return PriceBook(table_date=self.table_date, description=self.description,
                         ec2=self._ec2, emr_fee=self._emr_fee, gp3_gb_month=self._gp3,
                         vcpus=self._vcpus, live_ec2=live_ec2, live_emr_fee=live_fee,
                         live_error=error)

    # -- helpers ---------------------------------------------------------------------

    def _from_table(self, table: Table, region: str, instance_type: str) -> Price | None:
        entry = table.get(region, {}).get(instance_type)
        if entry is None:
            return None
        return Price(entry.usd, ESTIMATED if entry.estimated else self.table_source)

    def _weakest(self, *prices: Price) -> str:
        sources = {p.source for p in prices}
        if ESTIMATED in sources:
            return ESTIMATED
        if sources == {LIVE}:
            return LIVE
        return self.table_source


@dataclass
class CostLine:
    region: str
    what: str            # "12 × t3.medium seats", "12 × EMR m5.xlarge ×3"
    count: int           # how many of `what` (seats, volumes, clusters)
    unit_usd_per_hour: float | None   # one of them; None when the price is unknown
    usd_per_hour: float | None        # count × unit; None when unknown
    source: str          # where the unit price comes from, or "price unknown"


class Total(float):
    """The class's hourly total. ``lower_bound`` is true when some line has no price: the
    real cost is at least this much; ``unpriced`` names those lines."""

    lower_bound: bool
    unpriced: tuple[str, ...]

    def __new__(cls, value: float, unpriced: Sequence[str] = ()) -> Self:
        self = super().__new__(cls, value)
        self.unpriced = tuple(unpriced)
        self.lower_bound = bool(self.unpriced)
        return self


def class_cost(book: PriceBook, seats_per_region: Mapping[str, int], instance_type: str,
               emr_mode: str, emr_instance_type: str, emr_instance_count: int, *,
               volume_gb: int = 0) -> tuple[list[CostLine], Total | None]:
    """Hourly cost of a class, line by line, region by region (in the mapping's order).

    ``emr_mode``: "per-seat" (one cluster of ``emr_instance_count`` per seat), "shared"
    (one cluster, in the first region that has seats, as `plan` places it) or "none".
    ``volume_gb`` > 0 adds each seat's gp3 disk. The total is None when no line has a
    price; otherwise a ``Total`` whose ``lower_bound`` flags unknown lines.
    """
    if emr_mode not in EMR_MODES:
        raise ValueError(f"emr mode {emr_mode!r} is not one of {', '.join(EMR_MODES)}")
    lines: list[CostLine] = []
    cluster = f"EMR {emr_instance_type} ×{emr_instance_count}"
    for region, seats in seats_per_region.items():
        if seats <= 0:
            continue
        lines.append(_line(region, f"{seats} × {instance_type} seats", seats,
                           book.ec2(region, instance_type)))
        if volume_gb > 0:
            lines.append(_line(region, f"{seats} × {volume_gb} GB gp3 disk", seats,
                               book.disk(region, volume_gb)))
        if emr_mode == "per-seat":
            lines.append(_line(region, f"{seats} × {cluster}", seats,
                               book.emr(region, emr_instance_type), emr_instance_count))
    first = next((r for r, n in seats_per_region.items() if n > 0), None)
    if emr_mode == "shared" and first is not None:
        lines.append(_line(first, f"1 × {cluster} (shared)", 1,
                           book.emr(first, emr_instance_type), emr_instance_count))
    known = [line.usd_per_hour for line in lines if line.usd_per_hour is not None]
    unpriced = [f"{line.region}: {line.what}" for line in lines if line.usd_per_hour is None]
    if lines and not known:
        return lines, None
    return lines, Total(sum(known), unpriced)


def _line(region: str, what: str, count: int, price: Price | None,
          per_unit: int = 1) -> CostLine:
    if price is None:
        return CostLine(region, what, count, None, None, "price unknown")
    unit = price.usd_per_hour * per_unit
    return CostLine(region, what, count, unit, unit * count, price.source)


def _entry(value: Any) -> _Entry:
    if isinstance(value, Mapping):
        return _Entry(float(value["usd"]), bool(value.get("estimated", False)))
    return _Entry(float(value))


def _table(data: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, _Entry]]:
    return {region: {t: _entry(v) for t, v in row.items()} for region, row in data.items()}


def _copy(table: Table) -> dict[str, dict[str, _Entry]]:
    return {region: dict(row) for region, row in table.items()}


def _reason(e: BaseException) -> str:
    """One plain line: what went wrong, without a traceback."""
    from labkit.errors import LabkitError

    if isinstance(e, LabkitError):
        text = e.message
    else:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    text = re.sub(r"<[^>]*>", " ", text)  # emulators and proxies answer in HTML
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = ["HOURS_PER_MONTH", "CostLine", "Price", "PriceBook", "Total", "class_cost"]
