"""The AWS Price List API (service ``pricing``): on-demand hourly prices, read-only.

Used by ``labkit plan`` to refresh the shipped price table, so it must never make a plan
hang or fail: one short attempt (a few seconds at most), no retry loop, and any failure
comes back as a labkit error that the caller turns into a note. The Price List API lives
in us-east-1 whatever region the class runs in.

Calls are kept few: one ``get_products`` per instance type, with no ``regionCode``
filter, returns that type's product in every region at once (pages followed), and the
caller keeps the regions it wants. A class of one seat type and one EMR type costs two
or three calls, not one per region.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import botocore.config

from labkit.aws.errors import aws_call

PRICING_REGION = "us-east-1"

# One quick attempt: a plan on a train or behind a firewall must answer in seconds.
QUICK = botocore.config.Config(connect_timeout=3, read_timeout=5,
                               retries={"mode": "standard", "total_max_attempts": 1})

# A bound on pages, not a retry: one type has a few dozen regional products (~1 page).
MAX_PAGES = 10

EC2_LINUX = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
             "capacitystatus": "Used", "licenseModel": "No License required"}


def client(session: Any) -> Any:
    """A Price List client from a boto3-Session-like object (so the caller's credentials,
    profile and ``AWS_ENDPOINT_URL`` apply)."""
    return session.client("pricing", region_name=PRICING_REGION, config=QUICK)


def ec2_on_demand(pricing: Any, instance_type: str) -> dict[str, float]:
    """Linux, shared-tenancy, on-demand USD/hour of one instance type, by region code."""
    return _by_region(pricing, "AmazonEC2", {"instanceType": instance_type, **EC2_LINUX},
                      doing=f"reading the on-demand price of {instance_type}")


def emr_fee(pricing: Any, instance_type: str) -> dict[str, float]:
    """The EMR charge per instance-hour (on top of EC2) of one instance type, by region."""
    return _by_region(pricing, "ElasticMapReduce",
                      {"instanceType": instance_type, "softwareType": "EMR"},
                      doing=f"reading the EMR price of {instance_type}")


def _by_region(pricing: Any, service: str, match: Mapping[str, str], *,
               doing: str) -> dict[str, float]:
    filters = [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in match.items()]
    items: list[str] = []
    token = ""
    with aws_call("pricing", doing, region=PRICING_REGION):
        for _ in range(MAX_PAGES):
            args: dict[str, Any] = {"ServiceCode": service, "Filters": filters,
                                    "FormatVersion": "aws_v1", "MaxResults": 100}
            if token:
                args["NextToken"] = token
            page = pricing.get_products(**args)
            items.extend(page.get("PriceList", []))
            token = page.get("NextToken", "")
            if not token:
                break
    return prices_by_region(items)


def prices_by_region(price_list: Iterable[str | Mapping[str, Any]]) -> dict[str, float]:
    """Parse ``PriceList`` entries (JSON strings) into {regionCode: USD per hour}.

    A region whose products disagree (two different hourly prices for what the filters
    call one product) is left out: the shipped table is better than a guess.
    """
    found: dict[str, set[float]] = {}
    for raw in price_list:
        try:
            item = json.loads(raw) if isinstance(raw, str) else raw
            region = item["product"]["attributes"].get("regionCode", "")
            price = _hourly_usd(item.get("terms", {}).get("OnDemand", {}))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if region and price is not None:
            found.setdefault(region, set()).add(price)
    return {region: next(iter(ps)) for region, ps in found.items() if len(ps) == 1}


def _hourly_usd(on_demand: Mapping[str, Any]) -> float | None:
    for term in on_demand.values():
        for dim in term.get("priceDimensions", {}).values():
            if str(dim.get("unit", "")).lower() not in ("hrs", "hours", "hour"):
                continue
            usd = dim.get("pricePerUnit", {}).get("USD")
            if usd is None:
                continue
            value = float(usd)
            if value > 0:
                return value
    return None
