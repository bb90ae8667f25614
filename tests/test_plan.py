"""Seats -> regions (labkit.plan.place): preference order, pins, quota room, re-runs."""

from __future__ import annotations

from labkit.plan import RegionRoom, place, room_from_quota
from labkit.roster import Seat, Student

EU, US, SA = "eu-west-1", "us-east-1", "sa-east-1"


def seats(*specs: str) -> list[Seat]:
    """'ana' is a free seat, 'ana@us-east-1' a seat pinned there."""
    out = []
    for line, spec in enumerate(specs, start=2):
        name, _, region = spec.partition("@")
        out.append(Seat(name, (Student(name, "", "", "", region, line),), region))
    return out


def room(**seats_left: int | None) -> dict[str, RegionRoom]:
    return {r.replace("_", "-"): RegionRoom(r.replace("_", "-"), n, "test")
            for r, n in seats_left.items()}


def test_without_limits_every_free_seat_goes_to_the_first_region() -> None:
    p = place(seats("a", "b", "c"), [US, EU])
    assert p.region_of == {"a": US, "b": US, "c": US}
    assert p.unplaced == []


def test_room_none_means_unlimited() -> None:
    p = place(seats(*"abcdefgh"), [EU, US], room(eu_west_1=None, us_east_1=1))
    assert p.seats_in(EU) == list("abcdefgh")


def test_a_region_fills_to_its_room_then_seats_spill_in_preference_order() -> None:
    p = place(seats(*"abcdef"), [EU, US, SA], room(eu_west_1=2, us_east_1=3, sa_east_1=5))
    assert p.seats_in(EU) == ["a", "b"]
    assert p.seats_in(US) == ["c", "d", "e"]
    assert p.seats_in(SA) == ["f"]
    assert any("spill" in n for n in p.notes)


def test_a_full_region_is_skipped() -> None:
    p = place(seats("a", "b"), [EU, US], room(eu_west_1=0))
    assert p.counts([EU, US]) == {EU: 0, US: 2}


def test_seats_that_fit_nowhere_are_named_as_unplaced() -> None:
    p = place(seats(*"abcde"), [EU, US], room(eu_west_1=1, us_east_1=2))
    assert p.counts([EU, US]) == {EU: 1, US: 2}
    assert p.unplaced == ["d", "e"]
    assert "d" not in p.region_of


def test_a_pinned_seat_goes_where_pinned_even_outside_the_preferred_regions() -> None:
    p = place(seats("a", f"b@{SA}", "c"), [EU, US])
    assert p.region_of == {"a": EU, "b": SA, "c": EU}
    assert p.counts([EU, US]) == {EU: 2, US: 0, SA: 1}


def test_a_pinned_seat_uses_up_room_before_the_free_seats_fill_it() -> None:
    # 'c' comes last in the roster but is pinned: it keeps its place in eu-west-1,
    # and only one free seat still fits there.
    p = place(seats("a", "b", f"c@{EU}"), [EU, US], room(eu_west_1=2))
    assert p.region_of == {"c": EU, "a": EU, "b": US}


def test_a_pinned_seat_is_honoured_in_a_full_region_with_a_warning() -> None:
    p = place(seats(f"a@{US}", "b"), [EU, US], room(us_east_1=0))
    assert p.region_of["a"] == US
    assert p.unplaced == []
    assert any("a" in n and US in n and "quota" in n for n in p.notes)


def test_a_full_pinned_region_outside_the_preferred_list_is_warned_about_too() -> None:
    p = place(seats(f"a@{SA}"), [EU], room(sa_east_1=0))
    assert p.region_of == {"a": SA}
    assert any(SA in n for n in p.notes)


def test_seats_that_already_have_a_machine_stay_where_it_is() -> None:
    # b already runs in us-east-1 although eu-west-1 is preferred and has room; c already
    # runs in eu-west-1 although its row now pins it elsewhere: re-running never moves a seat.
    p = place(seats("a", "b", f"c@{SA}", "d"), [EU, US], existing={"b": US, "c": EU})
    assert p.region_of == {"a": EU, "b": US, "c": EU, "d": EU}


def test_seats_that_already_run_do_not_use_up_the_room_again() -> None:
    # Room comes from the vCPU quota minus what already runs (room_from_quota), so the
    # machines of existing seats are already out of it.
    p = place(seats("a", "b", "c"), [EU, US], room(eu_west_1=1), existing={"a": EU, "b": EU})
    assert p.region_of == {"a": EU, "b": EU, "c": EU}


def test_existing_seats_that_left_the_roster_are_not_placed() -> None:
    p = place(seats("a"), [EU], existing={"gone": US})
    assert p.region_of == {"a": EU}


def test_counts_list_preferred_regions_first_then_pinned_ones() -> None:
    p = place(seats(f"a@{SA}", "b"), [US, EU])
    assert list(p.counts([US, EU])) == [US, EU, SA]


def test_room_from_quota_turns_vcpus_into_seats() -> None:
    r = room_from_quota(EU, 32.0, 6, 2)
    assert r.seats == 13
    assert "32" in r.reason and "6 in use" in r.reason
    assert room_from_quota(EU, 8.0, 10, 2).seats == 0  # over quota already: no room, not -1
    for unknown in ((None, 6, 2), (32.0, None, 2), (32.0, 6, None)):
        assert room_from_quota(EU, *unknown).seats is None
