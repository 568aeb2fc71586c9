"""What a scenario reports: the traffic it sent, what was acknowledged and counted, and whether
its pass criterion held.

Every scenario returns one ``Outcome``. ``lost`` and ``duplicated`` come from the scenario's
ledger (what the load generator sent and saw acknowledged, ``chaos.ledger``), never from the
service's own counters; ``recover_s`` is the time from the end of the fault to the service
working again (None where the scenario injects no fault to recover from).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Outcome:
    """One scenario's figures and verdict."""

    scenario: str
    sent: int = 0  # events (or requests, for request-level scenarios) the generator sent
    acknowledged: int = 0  # of those, answered 202 (at least once)
    counted: int = 0  # distinct acknowledged events found applied in the database
    lost: int = 0  # acknowledged but not counted: must be 0
    duplicated: int = 0  # counted more than once (or a report above the ledger): must be 0
    recover_s: float | None = None
    duration_s: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)  # each pass criterion, by name
    figures: dict[str, Any] = field(default_factory=dict)  # anything else worth publishing
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every criterion held, nothing acknowledged was lost and nothing doubled."""
        return self.lost == 0 and self.duplicated == 0 and all(self.checks.values())

    def check(self, name: str, ok: bool, note: str | None = None) -> bool:
        """Record a pass criterion (and, when it failed, why)."""
        self.checks[name] = bool(ok)
        if not ok and note:
            self.notes.append(f"{name}: {note}")
        return bool(ok)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def table(outcomes: list[Outcome]) -> str:
    """The Markdown table RELIABILITY.md publishes."""
    rows = [
        "| scenario | sent | acknowledged | counted | lost | duplicated | time to recover "
        "| duration | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        recover = "—" if o.recover_s is None else f"{o.recover_s:.1f} s"
        rows.append(
            f"| {o.scenario} | {o.sent:,} | {o.acknowledged:,} | {o.counted:,} | {o.lost} "
            f"| {o.duplicated} | {recover} | {o.duration_s:.0f} s | {'yes' if o.passed else 'NO'} |"
        )
    return "\n".join(rows)
