"""labkit.pricing: the shipped price table, class cost arithmetic, and the live refresh
from the AWS Price List API (which must never hang or fail a plan).

Nothing here reaches AWS: live look-ups go to a closed port, a local moto server, or a
botocore Stubber. Credentials are fake and the instance-metadata lookup is disabled, so
botocore never probes the network for credentials either.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from labkit.aws import pricing_api
from labkit.pricing import LIVE, CostLine, PriceBook, Total, class_cost

BRIEF_REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2",
                 "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1", "ap-south-1",
                 "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "ca-central-1",
                 "sa-east-1"]
BRIEF_TYPES = ["t3.micro", "t3.small", "t3.medium", "t3.large", "t3.xlarge", "t3a.micro",
               "t3a.small", "t3a.medium", "t3a.large", "t3a.xlarge", "t2.micro", "t2.small",
               "t2.medium", "m5.large", "m5.xlarge", "m5.2xlarge", "m6i.large", "m6i.xlarge",
               "m7i.large", "m7i.xlarge", "c5.large", "c5.xlarge", "r5.large", "r5.xlarge"]
EMR_TYPES = ["m5.xlarge", "m5.2xlarge", "m6g.xlarge", "m6i.xlarge", "c5.xlarge", "r5.xlarge"]


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Start clean: no credentials, profile or endpoint from the developer's machine."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_PRICING", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def fake_session(**kw: Any) -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name="us-east-1", **kw)


class EndpointSession:
    """A boto3-Session-like object whose clients talk to one endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = fake_session()

    def client(self, name: str, **kw: Any) -> Any:
        return self.session.client(name, endpoint_url=self.url, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the shipped table ------------------------------------------------------------------

@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook.shipped()


@pytest.fixture(scope="module")
def raw_table() -> dict[str, Any]:
    from importlib import resources

    return dict(json.loads(resources.files("labkit").joinpath("data/prices.json")
                           .read_text("utf-8")))


def test_table_states_its_date_and_sources(book: PriceBook, raw_table: dict[str, Any]) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", book.table_date)
    assert raw_table["description"].startswith(
        f"AWS public on-demand Linux prices, USD/hour, as of {book.table_date}")
    assert raw_table["sources"], "the table must say where its figures come from"
    assert book.ec2("us-east-1", "t3.micro") is not None
    assert book.ec2("us-east-1", "t3.micro").source == f"table {book.table_date}"  # type: ignore[union-attr]


def test_t3_medium_in_us_east_1_is_sane(book: PriceBook) -> None:
    price = book.ec2("us-east-1", "t3.medium")
    assert price is not None
    assert 0.03 <= price.usd_per_hour <= 0.06


def test_every_region_and_type_of_the_brief_is_priced(book: PriceBook) -> None:
    # t2/t3a are not sold in eu-north-1 (nor t2 in eu-south-1): those stay unknown.
    not_sold = {("eu-north-1", t) for t in BRIEF_TYPES if t.startswith(("t2.", "t3a."))}
    not_sold |= {("eu-south-1", t) for t in BRIEF_TYPES if t.startswith("t2.")}
    for region in BRIEF_REGIONS:
        for t in BRIEF_TYPES:
            price = book.ec2(region, t)
            if (region, t) in not_sold:
                assert price is None, (region, t)
            else:
                assert price is not None, (region, t)
        for t in EMR_TYPES:
            assert book.emr(region, t) is not None, (region, t)
        assert book.gp3_gb_month(region) is not None, region


def test_every_price_is_positive(raw_table: dict[str, Any]) -> None:
    def usd(v: Any) -> float:
        return float(v["usd"] if isinstance(v, dict) else v)

    seen = 0
    for section in ("ec2", "emr_fee"):
        for region, row in raw_table[section].items():
            for t, v in row.items():
                assert usd(v) > 0, (section, region, t)
                seen += 1
    for region, v in raw_table["ebs_gp3_gb_month"].items():
        assert usd(v) > 0, region
    assert seen > 400


def test_vcpus_known_for_every_listed_type(book: PriceBook, raw_table: dict[str, Any]) -> None:
    listed = {t for section in ("ec2", "emr_fee") for row in raw_table[section].values()
              for t in row}
    for t in listed:
        n = book.vcpus(t)
        assert n is not None and n >= 1, t
    assert book.vcpus("t2.micro") == 1
    assert book.vcpus("t3.micro") == 2  # t3 sizes below xlarge all have 2 vCPUs
    assert book.vcpus("m5.2xlarge") == 8
    assert book.vcpus("x9.unheard-of") is None


def test_estimates_are_marked_and_sources_kept(book: PriceBook) -> None:
    assert book.ec2("sa-east-1", "c5.large").source == "estimated"  # type: ignore[union-attr]
    assert book.ec2("sa-east-1", "t3.medium").source.startswith("table ")  # type: ignore[union-attr]
    # EMR = EC2 + fee; a sourced EC2 price plus an estimated fee is an estimate
    ec2, fee = book.ec2("eu-west-1", "m5.xlarge"), book.emr_fee("eu-west-1", "m5.xlarge")
    emr = book.emr("eu-west-1", "m5.xlarge")
    assert ec2 and fee and emr
    assert emr.usd_per_hour == pytest.approx(ec2.usd_per_hour + fee.usd_per_hour)
    assert emr.source == "estimated"
    both = book.emr("us-east-1", "m5.xlarge")
    assert both and both.source.startswith("table ")
    assert both.usd_per_hour == pytest.approx(0.24)


def test_unknown_region_or_type_is_none_not_a_crash(book: PriceBook) -> None:
    assert book.ec2("mars-north-1", "t3.medium") is None
    assert book.ec2("us-east-1", "x9.huge") is None
    assert book.emr("us-east-1", "t3.medium") is None  # EMR does not run on t3
    assert book.disk("mars-north-1", 30) is None


# -- class cost -------------------------------------------------------------------------

SMALL_TABLE = json.dumps({
    "as_of": "2026-01-02",
    "description": "AWS public on-demand Linux prices, USD/hour, as of 2026-01-02",
    "vcpus": {"t3.medium": 2, "m5.xlarge": 4},
    "ec2": {"r-a": {"t3.medium": 0.04, "m5.xlarge": 0.2},
            "r-b": {"t3.medium": 0.05, "m5.xlarge": {"usd": 0.25, "estimated": True}},
            "r-c": {"t3.medium": 0.10, "m5.xlarge": 0.3}},
    "emr_fee": {"r-a": {"m5.xlarge": 0.05}, "r-b": {"m5.xlarge": 0.06},
                "r-c": {"m5.xlarge": 0.07}},
    "ebs_gp3_gb_month": {"r-a": 0.073, "r-b": 0.073, "r-c": 0.146},
})


def cents(usd: float | None) -> float | None:
    """Rounded far below a cent, so float noise cannot fail a comparison."""
    return None if usd is None else round(usd, 6)


@pytest.fixture
def small() -> PriceBook:
    return PriceBook.from_json(SMALL_TABLE)


def test_class_cost_120_seats_3_regions_per_seat_emr(small: PriceBook) -> None:
    lines, total = class_cost(small, {"r-a": 50, "r-b": 40, "r-c": 30}, "t3.medium",
                              "per-seat", "m5.xlarge", 3)
    got = [(line.region, line.what, line.count, cents(line.unit_usd_per_hour),
            cents(line.usd_per_hour)) for line in lines]
    assert got == [
        ("r-a", "50 × t3.medium seats", 50, 0.04, 2.0),
        ("r-a", "50 × EMR m5.xlarge ×3", 50, 0.75, 37.5),     # 3 × (0.20 + 0.05)
        ("r-b", "40 × t3.medium seats", 40, 0.05, 2.0),
        ("r-b", "40 × EMR m5.xlarge ×3", 40, 0.93, 37.2),     # 3 × (0.25 + 0.06)
        ("r-c", "30 × t3.medium seats", 30, 0.10, 3.0),
        ("r-c", "30 × EMR m5.xlarge ×3", 30, 1.11, 33.3),     # 3 × (0.30 + 0.07)
    ]
    assert isinstance(total, Total)
    assert total == pytest.approx(115.0)
    assert not total.lower_bound
    assert lines[3].source == "estimated"  # r-b's m5.xlarge EC2 price is an estimate
    assert lines[0].source == "table 2026-01-02"


def test_shared_cluster_is_one_cluster_in_the_first_region_with_seats(small: PriceBook) -> None:
    lines, total = class_cost(small, {"r-c": 0, "r-b": 10, "r-a": 5}, "t3.medium", "shared",
                              "m5.xlarge", 4)
    emr = [line for line in lines if "EMR" in line.what]
    assert [(e.region, e.count, cents(e.usd_per_hour)) for e in emr] == [("r-b", 1, 1.24)]
    assert [line.region for line in lines if "seats" in line.what] == ["r-b", "r-a"]
    assert total == pytest.approx(10 * 0.05 + 5 * 0.04 + 4 * 0.31)


def test_no_emr_and_disks(small: PriceBook) -> None:
    lines, total = class_cost(small, {"r-a": 10, "r-c": 2}, "t3.medium", "none", "m5.xlarge",
                              3, volume_gb=73)
    assert not any("EMR" in line.what for line in lines)
    disks = [line for line in lines if "disk" in line.what]
    assert [(d.region, d.count) for d in disks] == [("r-a", 10), ("r-c", 2)]
    # 73 GB at 0.073/GB-month over 730 h = 0.0073/h per disk
    assert disks[0].unit_usd_per_hour == pytest.approx(0.0073)
    assert total == pytest.approx(10 * 0.04 + 2 * 0.10 + 10 * 0.0073 + 2 * 0.0146)


def test_unknown_type_gives_none_lines_and_a_lower_bound(small: PriceBook) -> None:
    lines, total = class_cost(small, {"r-a": 3, "mars-1": 2}, "t3.medium", "per-seat",
                              "m5.xlarge", 2)
    unknown = [line for line in lines if line.region == "mars-1"]
    assert len(unknown) == 2
    assert all(line.usd_per_hour is None and line.unit_usd_per_hour is None
               and line.source == "price unknown" for line in unknown)
    assert isinstance(total, Total) and total.lower_bound
    assert total == pytest.approx(3 * 0.04 + 3 * 2 * 0.25)
    assert total.unpriced == ("mars-1: 2 × t3.medium seats", "mars-1: 2 × EMR m5.xlarge ×2")

    lines, total = class_cost(small, {"r-a": 3}, "x9.huge", "none", "m5.xlarge", 2)
    assert [(line.what, line.usd_per_hour) for line in lines] == [("3 × x9.huge seats", None)]
    assert total is None


def test_class_cost_with_the_shipped_table(book: PriceBook) -> None:
    lines, total = class_cost(book, {"us-east-1": 40, "eu-west-1": 40, "sa-east-1": 40},
                              "t3.medium", "per-seat", "m5.xlarge", 3)
    assert all(isinstance(line, CostLine) and line.usd_per_hour for line in lines)
    assert total is not None and not total.lower_bound
    assert lines[0].usd_per_hour == pytest.approx(40 * 0.0416)
    assert lines[1].usd_per_hour == pytest.approx(40 * 3 * 0.24)


def test_bad_emr_mode_is_refused(small: PriceBook) -> None:
    with pytest.raises(ValueError, match="per-seat"):
        class_cost(small, {"r-a": 1}, "t3.medium", "sometimes", "m5.xlarge", 1)


# -- live prices ------------------------------------------------------------------------

def test_unreachable_endpoint_keeps_the_table_and_says_why(book: PriceBook) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    live = book.with_live_prices(lambda region: EndpointSession(url),
                                 ["us-east-1", "eu-west-1"], ["t3.medium", "m5.xlarge"],
                                 emr_instance_types=["m5.xlarge"])
    elapsed = time.monotonic() - start
    assert "cannot be reached" in live.live_error
    assert live.ec2("eu-west-1", "t3.medium") == book.ec2("eu-west-1", "t3.medium")
    assert live.emr("us-east-1", "m5.xlarge") == book.emr("us-east-1", "m5.xlarge")
    assert live.live_count() == 0
    assert "live prices not read" in live.describe()
    assert elapsed < 10  # generous: one attempt, no retries, a closed loopback port


def test_aws_endpoint_url_from_the_environment_is_honoured(
        book: PriceBook, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    live = book.with_live_prices(lambda region: fake_session(), ["us-east-1"], ["t3.medium"])
    assert f"127.0.0.1:{port}" in live.live_error


def test_no_credentials_keeps_the_table_and_says_why(book: PriceBook) -> None:
    live = book.with_live_prices(lambda region: boto3.Session(region_name="us-east-1"),
                                 ["us-east-1"], ["t3.medium"])
    assert "no AWS credentials" in live.live_error
    assert live.ec2("us-east-1", "t3.medium") == book.ec2("us-east-1", "t3.medium")


def test_a_session_factory_that_raises_is_a_note_not_a_crash(book: PriceBook) -> None:
    def broken(region: str) -> Any:
        raise RuntimeError("profile 'class' has no region")

    live = book.with_live_prices(broken, ["us-east-1"], ["t3.medium"])
    assert live.live_error == "RuntimeError: profile 'class' has no region"
    assert live.ec2("us-east-1", "t3.medium") == book.ec2("us-east-1", "t3.medium")


@pytest.fixture
def moto_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_against_moto_parses_or_falls_back(book: PriceBook, moto_url: str) -> None:
    # moto 5.2.1 has no Price List API (it answers 500); if a later one does, its
    # prices must be read as live prices. Either way: no exception, no silent change.
    live = book.with_live_prices(lambda region: EndpointSession(moto_url),
                                 ["us-east-1", "eu-west-1"], ["t3.medium"])
    for region in ("us-east-1", "eu-west-1"):
        price = live.ec2(region, "t3.medium")
        assert price is not None
        if price.source == LIVE:
            assert price.usd_per_hour > 0
        else:
            assert price == book.ec2(region, "t3.medium")
            assert live.live_error
    if live.live_count() == 0:
        assert "500" in live.live_error or "no price" in live.live_error


def product(instance_type: str, region: str, usd: str, unit: str = "Hrs") -> str:
    sku = f"SKU{abs(hash((instance_type, region))) % 10**8}"
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "sku": sku,
                    "attributes": {"instanceType": instance_type, "regionCode": region,
                                   "operatingSystem": "Linux", "tenancy": "Shared"}},
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {f"{sku}.JRTCKXETXF": {"priceDimensions": {
                f"{sku}.JRTCKXETXF.6YS6EN2CT7": {"unit": unit, "pricePerUnit": {"USD": usd},
                                                 "description": "on demand"}}}},
            "Reserved": {f"{sku}.4NA7Y494T4": {"priceDimensions": {
                f"{sku}.4NA7Y494T4.2TG2D8R56U": {"unit": "Hrs",
                                                 "pricePerUnit": {"USD": "0.0010000000"}}}}},
        },
    })


class StubbedSession:
    def __init__(self, client: Any) -> None:
        self._client = client

    def client(self, name: str, **kw: Any) -> Any:
        assert name == "pricing" and kw["region_name"] == "us-east-1"
        return self._client


def test_live_prices_one_call_per_type_all_regions_at_once(book: PriceBook) -> None:
    client = fake_session().client("pricing", region_name="us-east-1")
    stub = Stubber(client)
    ec2_filters = [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in
                   {"instanceType": "t3.medium", **pricing_api.EC2_LINUX}.items()]
    stub.add_response("get_products", {
        "PriceList": [product("t3.medium", "us-east-1", "0.0500000000"),
                      product("t3.medium", "ap-south-1", "0.0400000000")],
        "NextToken": "page-2", "FormatVersion": "aws_v1"},
        {"ServiceCode": "AmazonEC2", "Filters": ec2_filters, "FormatVersion": "aws_v1",
         "MaxResults": 100})
    stub.add_response("get_products", {
        "PriceList": [product("t3.medium", "eu-west-1", "0.0600000000")],
        "FormatVersion": "aws_v1"})
    stub.add_response("get_products", {"PriceList": [
        product("m5.xlarge", "us-east-1", "0.2000000000"),
        product("m5.xlarge", "eu-west-1", "0.2200000000"),
        # two different prices for one region: ambiguous, so the table is kept there
        product("m5.xlarge", "eu-west-1", "0.2300000000")]})
    stub.add_response("get_products", {"PriceList": [
        product("m5.xlarge", "us-east-1", "0.0500000000"),
        product("m5.xlarge", "eu-west-1", "0.0600000000", unit="Quantity")]})
    with stub:
        live = book.with_live_prices(lambda region: StubbedSession(client),
                                     ["us-east-1", "eu-west-1"], ["t3.medium", "m5.xlarge"],
                                     emr_instance_types=["m5.xlarge"])
        stub.assert_no_pending_responses()
    assert priced(live.ec2("us-east-1", "t3.medium")) == (0.05, LIVE)
    assert priced(live.ec2("eu-west-1", "t3.medium")) == (0.06, LIVE)
    assert live.ec2("ap-south-1", "t3.medium") == book.ec2("ap-south-1", "t3.medium")
    assert live.ec2("eu-west-1", "m5.xlarge") == book.ec2("eu-west-1", "m5.xlarge")
    emr = live.emr("us-east-1", "m5.xlarge")
    assert emr is not None and emr.source == LIVE
    assert emr.usd_per_hour == pytest.approx(0.25)
    # eu-west-1: the EMR fee had no hourly price, so it stays the table's estimate
    assert live.emr_fee("eu-west-1", "m5.xlarge") == book.emr_fee("eu-west-1", "m5.xlarge")
    assert live.live_count() == 4
    assert "m5.xlarge in eu-west-1" in live.live_error
    assert book.live_count() == 0, "the original book is not changed"


def test_price_list_parsing_ignores_junk() -> None:
    assert pricing_api.prices_by_region([
        "not json", json.dumps({"product": {}}), product("t3.micro", "us-east-1", "0"),
        product("t3.micro", "eu-west-1", "0.0114000000"),
    ]) == {"eu-west-1": 0.0114}



def priced(price: Any) -> tuple[float | None, str] | None:
    return None if price is None else (cents(price.usd_per_hour), price.source)
