"""What the CLI prints: plans, summaries, status tables. Only presentation lives here."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from rich.console import Console
from rich.table import Table
from rich.text import Text

from labkit.pipeline import PlanResult


def money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def rate(value: float | None) -> str:
    """A line's hourly price: cents are too coarse below a dollar ($0.046, not $0.05)."""
    if value is None:
        return "price unknown"
    return f"${value:,.3f}" if value < 1 else money(value)


def print_plan(console: Console, result: PlanResult) -> None:
    config = result.config
    roster = result.roster
    placement = result.placement
    console.print(f"[bold]session[/] {config.session}: {len(roster.students)} students in "
                  f"{len(roster.seats)} seats"
                  + (f" (config {config.path})" if config.path else
                     " (no labkit.toml: built-in defaults)"))
    table = Table(title="seats per region", title_justify="left")
    table.add_column("region")
    table.add_column("seats", justify="right")
    table.add_column("pinned", justify="right")
    table.add_column("room (why)")
    pinned = {s.name for s in roster.seats if s.region}
    for region, count in placement.counts(config.regions).items():
        room = result.rooms.get(region)
        why = room.reason if room else ("not read (--offline)" if result.offline
                                         else "quota unknown")
        n_pinned = len([s for s in placement.seats_in(region) if s in pinned])
        table.add_row(region, str(count), str(n_pinned) if n_pinned else "", why)
    console.print(table)
    if placement.unplaced:
        console.print(f"[bold red]{len(placement.unplaced)} seats do not fit in any region:[/] "
                      + ", ".join(placement.unplaced[:10])
                      + (" ..." if len(placement.unplaced) > 10 else ""), markup=True)
        console.print("  add a region to `regions`, or ask AWS for a higher vCPU quota")
    for note in placement.notes + result.notes:
        console.print(f"note: {note}", markup=False)

    res = Table(title="will be created (all tagged labkit:session="
                      f"{config.session})", title_justify="left")
    res.add_column("where")
    res.add_column("what")
    res.add_column("how many", justify="right")
    for r in result.resources:
        res.add_row(r.region, r.what, str(r.count))
    console.print(res)

    if result.cost_lines:
        print_cost_table(console, result.cost_lines)
    print_class_cost(console, result)
    if result.price_note:
        console.print(result.price_note, markup=False)
    console.print("nothing was created." + (" (offline: AWS was not read)"
                                            if result.offline else ""))


def print_cost_table(console: Console, lines: list[Any]) -> None:
    """The cost lines, region by region, with each region's total when it has several."""
    cost = Table(title="hourly cost (on-demand, while running)", title_justify="left")
    cost.add_column("region")
    cost.add_column("what")
    cost.add_column("each/hour", justify="right")
    cost.add_column("total/hour", justify="right")
    by_region: dict[str, list[Any]] = {}
    for line in lines:
        by_region.setdefault(line.region, []).append(line)
    for region, items in by_region.items():
        for line in items:
            cost.add_row(line.region, line.what, rate(line.unit_usd_per_hour),
                         rate(line.usd_per_hour))
        if len(items) > 1:
            known = sum(i.usd_per_hour for i in items if i.usd_per_hour is not None)
            partial = any(i.usd_per_hour is None for i in items)
            cost.add_row("", f"{region} total", "",
                         ("at least " if partial else "") + rate(known), style="bold")
    console.print(cost)


def hourly(value: float | None) -> str:
    """"$1.20/hour", "at least $1.20/hour" (some prices unknown) or "price unknown"."""
    if value is None:
        return "price unknown"
    return ("at least " if getattr(value, "lower_bound", False) else "") + f"{money(value)}/hour"


def unpriced_lines(result: PlanResult) -> list[str]:
    """The cost lines without a price ("eu-west-1: 3 × EMR m5.xlarge ×2")."""
    return [f"{line.region}: {line.what}" for line in result.cost_lines
            if line.usd_per_hour is None]


def print_class_cost(console: Console, result: PlanResult) -> None:
    """The whole class's hourly cost against the budget, in one or a few plain lines."""
    total = result.hourly_usd
    budget = f"budget.max_hourly_usd = ${result.config.budget.max_hourly_usd:,.2f}"
    unpriced = unpriced_lines(result)
    if result.over_budget():
        verdict = (f"[bold red]over budget[/] ({budget}): provision will refuse it; raise "
                   "the budget in labkit.toml, use fewer or smaller machines, or pass "
                   "--allow-over-budget")
    elif total is None or unpriced:
        verdict = (f"[bold yellow]not checked against the budget[/] ({budget}): some "
                   "prices are unknown; check them by hand")
    else:
        verdict = f"within budget ({budget})"
    console.print(f"[bold]whole class: {hourly(total)}[/], {verdict}")
    if total is not None:
        least = "at least " if unpriced else ""
        console.print(f"a 2-day class: {least}{money(total * 16)} if stopped outside 8 h a day "
                      f"(`labkit stop`), {least}{money(total * 48)} if left running",
                      markup=False)
    if unpriced:
        console.print("no price known for: " + "; ".join(unpriced), markup=False)


class ProgressBoard:
    """Live counts while provisioning: launched / SSH-ready / bootstrapped / failed.

    On a terminal it redraws one line, led by what labkit is doing; elsewhere (CI, a
    log file) it prints a line per stage and per seat event so the log tells the story.
    Seats that a re-run finds already there ("found") or already set up ("ready") are
    counted without a line each.
    """

    KINDS = ("launched", "ssh", "ok", "failed")
    LABELS: ClassVar[dict[str, str]] = {"launched": "launched", "ssh": "SSH-ready",
                                        "ok": "bootstrapped", "failed": "failed"}
    SILENT: ClassVar[dict[str, tuple[str, ...]]] = {"found": ("launched",),
                                                    "ready": ("launched", "ssh", "ok")}

    def __init__(self, console: Console, total: int) -> None:
        import threading

        self.console = console
        self.total = total
        self.counts = dict.fromkeys(self.KINDS, 0)
        self.stage = "checking the plan"
        self._lock = threading.Lock()
        self._live: object | None = None

    def line(self) -> str:
        parts = [f"{self.LABELS[k]} {self.counts[k]}/{self.total}" for k in self.KINDS[:3]]
        return " · ".join(parts) + f" · failed {self.counts['failed']}"

    def _live_line(self) -> str:
        return f"{self.stage}… {self.line()}" if self.stage else self.line()

    def __enter__(self) -> Self:
        if self.console.is_terminal:
            from rich.live import Live

            live = Live(Text(self._live_line()), console=self.console, refresh_per_second=4,
                        transient=False)
            live.__enter__()
            self._live = live
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.stage = ""
            self._live.update(Text(self.line()))  # type: ignore[attr-defined]
            self._live.__exit__(None, None, None)  # type: ignore[attr-defined]

    def event(self, seat: str, kind: str) -> None:
        """``(seat, "launched" | "ssh" | "ok" | "failed" | "found" | "ready")``, or
        ``("", "stage:<what labkit is doing now>")``."""
        with self._lock:
            if kind.startswith("stage:"):
                self.stage = kind.removeprefix("stage:").strip()
                if self._live is None:
                    self.console.print(f"{self.stage}…", markup=False, soft_wrap=True)
            elif kind in self.SILENT:
                for counted in self.SILENT[kind]:
                    self.counts[counted] += 1
            else:
                if kind in self.counts:
                    self.counts[kind] += 1
                if self._live is None:
                    # One line per event, never wrapped: CI logs are read with grep.
                    self.console.print(f"  {seat}: {self.LABELS.get(kind, kind)}  "
                                       f"[{self.line()}]", markup=False, soft_wrap=True)
            if self._live is not None:
                self._live.update(Text(self._live_line()))  # type: ignore[attr-defined]


def print_provision_summary(console: Console, summary: object) -> None:
    from labkit.provision import Summary

    assert isinstance(summary, Summary)
    ok = len(summary.bootstrapped)
    total = len(summary.plan.roster.seats)
    console.print(f"[bold]{ok}/{total} seats ready[/] "
                  f"({len(summary.launched)} launched now, {len(summary.reused)} already there)",
                  soft_wrap=True)
    moves: dict[str, list[str]] = {}
    for seat, why in sorted(summary.moved.items()):
        moves.setdefault(why, []).append(seat)
    for why, seats in moves.items():  # "moved from A to B: why", said once per group
        console.print(f"  {len(seats)} seat{'s' if len(seats) > 1 else ''} {why}",
                      markup=False, soft_wrap=True)
        console.print(f"    {', '.join(seats)}", markup=False, soft_wrap=True)
    for item in summary.duplicates_removed:
        console.print(f"  removed a second machine or cluster for seat {item}", markup=False, soft_wrap=True)
    if summary.started:
        console.print(f"  started again (they were stopped): {', '.join(summary.started)}",
                      markup=False, soft_wrap=True)
    if summary.readdressed:
        console.print(f"  new addresses: {', '.join(summary.readdressed)}; reprint their "
                      "handouts (credentials.csv and ssh_config are updated)",
                      markup=False, soft_wrap=True)
    if summary.password_reset:
        console.print(f"  new passwords (state.json was lost): "
                      f"{', '.join(summary.password_reset)}; reprint their handouts",
                      markup=False, soft_wrap=True)
    out = summary.out
    console.print(f"credentials: {out / 'credentials.csv'} · handouts: {out / 'handouts.pdf'}"
                  f" · ssh: ssh -F {out / 'ssh_config'} <seat>", markup=False, soft_wrap=True)
    console.print(f"AWS API calls: {summary.api_calls}", markup=False, soft_wrap=True)


def print_status(console: Console, rows: list[dict[str, object]]) -> None:
    """One row per seat, then a line per thing the instructor may want to act on."""
    table = Table(title=f"{len(rows)} seats", title_justify="left")
    for col in ("seat", "region", "state", "host", "bootstrap", "cluster"):
        table.add_column(col)
    for r in rows:
        cluster = f"{r['cluster_id']} {r['cluster_state']}".strip() or "-"
        state = "no machine" if r["state"] == "none" else str(r["state"])
        host = str(r["host"]) if r["state"] not in ("none", "terminated") else ""
        cells = [str(r["seat"]), str(r["region"]) or "-", state, host or "-",
                 str(r["bootstrap"]) + (f" ({r['error']})" if r.get("error") else ""), cluster]
        table.add_row(*(Text(c) for c in cells))  # an error may hold [brackets]
    console.print(table)

    def seats(rows: list[dict[str, object]]) -> str:
        names = [str(r["seat"]) for r in rows]
        return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")

    stopped = [r for r in rows if r["state"] in ("stopped", "stopping")]
    missing = [r for r in rows if r["state"] in ("none", "terminated", "shutting-down")]
    failed = [r for r in rows if r["bootstrap"] == "failed" and r not in missing]
    running = [r for r in rows if r["state"] == "running"]
    if stopped:
        console.print(f"{len(stopped)} stopped ({seats(stopped)}): `labkit start` starts "
                      "the stopped machines and reprints the cards whose address changes", markup=False)
    if missing:
        console.print(f"{len(missing)} without a machine ({seats(missing)}): "
                      "`labkit provision ROSTER` makes new ones (same passwords), unless "
                      "the class was torn down on purpose", markup=False)
    if failed:
        console.print(f"{len(failed)} failed to set up ({seats(failed)}): "
                      "`labkit provision ROSTER` again retries only these", markup=False)
    if rows and len(running) == len(rows) and not failed:
        console.print(f"all {len(rows)} seats are running", markup=False)
