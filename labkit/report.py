"""What the CLI prints: plans, summaries, status tables. Only presentation lives here."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from labkit.pipeline import PlanResult


def money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


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
        cost = Table(title="hourly cost (on-demand, while running)", title_justify="left")
        cost.add_column("region")
        cost.add_column("what")
        cost.add_column("each/hour", justify="right")
        cost.add_column("total/hour", justify="right")
        for line in result.cost_lines:
            cost.add_row(line.region, line.what, money(line.unit_usd_per_hour),
                         money(line.usd_per_hour))
        console.print(cost)
    total = money(result.hourly_usd)
    limit = config.budget.max_hourly_usd
    verdict = ("[bold red]over budget[/]" if result.over_budget()
               else "within budget" if result.hourly_usd is not None else "check by hand")
    console.print(f"[bold]whole class: {total}/hour[/] (budget.max_hourly_usd = "
                  f"${limit:,.2f}: {verdict}); a 2-day class of 8 h/day: "
                  f"{money(None if result.hourly_usd is None else result.hourly_usd * 16)}")
    if result.price_note:
        console.print(result.price_note, markup=False)
    console.print("nothing was created." + (" (offline: AWS was not read)"
                                            if result.offline else ""))


class ProgressBoard:
    """Live counts while provisioning: launched / SSH-ready / bootstrapped / failed.

    On a terminal it redraws one line; elsewhere (CI, a log file) it prints a line per
    seat event so the log still tells the story.
    """

    KINDS = ("launched", "ssh", "ok", "failed")
    LABELS = {"launched": "launched", "ssh": "SSH-ready", "ok": "bootstrapped",
              "failed": "failed"}

    def __init__(self, console: Console, total: int) -> None:
        import threading

        self.console = console
        self.total = total
        self.counts = dict.fromkeys(self.KINDS, 0)
        self._lock = threading.Lock()
        self._live: object | None = None

    def line(self) -> str:
        parts = [f"{self.LABELS[k]} {self.counts[k]}/{self.total}" for k in self.KINDS[:3]]
        return " · ".join(parts) + f" · failed {self.counts['failed']}"

    def __enter__(self) -> ProgressBoard:
        if self.console.is_terminal:
            from rich.live import Live

            live = Live(self.line(), console=self.console, refresh_per_second=4,
                        transient=False)
            live.__enter__()
            self._live = live
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.line())  # type: ignore[attr-defined]
            self._live.__exit__(None, None, None)  # type: ignore[attr-defined]

    def event(self, seat: str, kind: str) -> None:
        with self._lock:
            if kind in self.counts:
                self.counts[kind] += 1
            if self._live is not None:
                self._live.update(self.line())  # type: ignore[attr-defined]
            else:
                self.console.print(f"  {seat}: {self.LABELS.get(kind, kind)}  [{self.line()}]",
                                   markup=False)


def print_provision_summary(console: Console, summary: object) -> None:
    from labkit.provision import Summary

    assert isinstance(summary, Summary)
    ok = len(summary.bootstrapped)
    total = len(summary.plan.roster.seats)
    console.print(f"[bold]{ok}/{total} seats ready[/] "
                  f"({len(summary.launched)} launched now, {len(summary.reused)} already there)")
    for seat, why in sorted(summary.moved.items()):
        console.print(f"  moved: {seat} {why}", markup=False)
    for item in summary.duplicates_removed:
        console.print(f"  removed a second machine for seat {item}", markup=False)
    if summary.password_reset:
        console.print(f"  new passwords (state.json was lost): "
                      f"{', '.join(summary.password_reset)}; reprint their handouts",
                      markup=False)
    out = summary.out
    console.print(f"credentials: {out / 'credentials.csv'} · handouts: {out / 'handouts.pdf'}"
                  f" · ssh: ssh -F {out / 'ssh_config'} <seat>", markup=False)
    console.print(f"AWS API calls: {summary.api_calls}", markup=False)


def print_status(console: Console, rows: list[dict[str, object]]) -> None:
    table = Table(title=f"{len(rows)} seats", title_justify="left")
    for col in ("seat", "region", "state", "host", "bootstrap", "cluster"):
        table.add_column(col)
    for r in rows:
        cluster = f"{r['cluster_id']} {r['cluster_state']}".strip() or "-"
        table.add_row(str(r["seat"]), str(r["region"]), str(r["state"]), str(r["host"]),
                      str(r["bootstrap"]) + (f" ({r['error']})" if r.get("error") else ""),
                      cluster)
    console.print(table)
