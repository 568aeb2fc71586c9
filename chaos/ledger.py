"""The independent ledger: what the load generator sent, what ingest acknowledged, and what the
database and the reports must therefore show.

The ledger knows nothing of the service but its HTTP answers: an event is *sent* when a request
carrying it left the client, *acknowledged* when a request carrying it got 202 (at least once).
After the pipeline settles, ``reconcile`` reads the ``events`` table (plain SQL, psycopg) and
checks:

- every acknowledged event is stored: ``lost`` = acknowledged − stored, which must be empty;
- nothing is stored that was never sent: ``unexpected`` = stored − sent, which must be empty;
- an event sent but never acknowledged (a request cut off by a crash, or refused until the
  client gave up) may or may not be stored: either is correct. So the history the reports
  must reflect is ``expected`` = acknowledged ∪ (stored ∩ sent);
- the reports finance reads equal, to the cent, what that history gives under the independent
  reference (``chaos.reports``); a report above the ledger's figure is a double count and
  counts in ``duplicated``.

An ``event_id`` stored twice is impossible (it is the table's primary key), so double counting
can only show in the reports: that is where the ledger looks for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from chaos import reports
from chaos.result import Outcome


@dataclass(frozen=True)
class Accounting:
    """The ledger's sets against the stored events (all sets of event ids)."""

    sent: frozenset[str]
    acknowledged: frozenset[str]
    stored: frozenset[str]

    @property
    def lost(self) -> frozenset[str]:
        """Acknowledged (202) but not stored: must be empty."""
        return self.acknowledged - self.stored

    @property
    def unexpected(self) -> frozenset[str]:
        """Stored but never sent by the generator: must be empty."""
        return self.stored - self.sent

    @property
    def counted(self) -> frozenset[str]:
        """Acknowledged and stored."""
        return self.acknowledged & self.stored

    @property
    def counted_unacknowledged(self) -> frozenset[str]:
        """Sent, never acknowledged, yet stored: a cut-off request that had been published."""
        return (self.stored & self.sent) - self.acknowledged

    @property
    def expected(self) -> frozenset[str]:
        """The history the reports must reflect: acknowledged ∪ (stored ∩ sent)."""
        return self.acknowledged | (self.stored & self.sent)


class Ledger:
    """Thread-safe record of every event sent and every event acknowledged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[str, dict[str, Any]] = {}
        self._acknowledged: set[str] = set()
        self.conflicts: list[str] = []  # an id sent again with other content: a generator bug

    def record_sent(self, events: Iterable[dict[str, Any]]) -> None:
        """Note events about to be sent (before the request: a cut-off one may be published)."""
        with self._lock:
            for event in events:
                known = self._sent.setdefault(event["event_id"], event)
                if known is not event and known != event:
                    self.conflicts.append(event["event_id"])

    def record_acknowledged(self, events: Iterable[dict[str, Any]]) -> None:
        """Note events of a request answered 202."""
        with self._lock:
            self._acknowledged.update(e["event_id"] for e in events)

    @property
    def sent_count(self) -> int:
        with self._lock:
            return len(self._sent)

    @property
    def acknowledged_count(self) -> int:
        with self._lock:
            return len(self._acknowledged)

    def acknowledged_ids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._acknowledged)

    def account(self, stored: Iterable[str]) -> Accounting:
        """The ledger's sets against ``stored`` (the event ids the database holds)."""
        with self._lock:
            return Accounting(
                sent=frozenset(self._sent),
                acknowledged=frozenset(self._acknowledged),
                stored=frozenset(stored),
            )

    def events(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The sent events with these ids (every id must have been sent)."""
        with self._lock:
            return [self._sent[i] for i in ids]

    def reconcile(self, outcome: Outcome, *, database_url: str, api_url: str, key: str) -> None:
        """Fill ``outcome``'s counts and check its ledger criteria; call once settled."""
        stored = stored_event_ids(database_url)
        accounting = self.account(stored)
        fill(outcome, accounting)
        outcome.check("no_conflicting_sends", not self.conflicts, f"{self.conflicts[:5]}")
        want = reports.expected(self.events(sorted(accounting.expected)))
        got = reports.fetch(api_url, key)
        diff = reports.compare(want, got)
        outcome.duplicated += diff.above
        outcome.figures["report_figures_compared"] = diff.compared
        outcome.figures["won_deals"] = want.won_deals
        outcome.figures["won_revenue"] = reports_money(want.won_revenue)
        outcome.check("reports_to_the_cent", not diff.mismatches, "; ".join(diff.mismatches[:5]))
        # The reports were read after the ids: nothing may have arrived in between.
        outcome.check("stable_while_read", stored_event_ids(database_url) == stored)


def fill(outcome: Outcome, accounting: Accounting) -> None:
    """Set ``outcome``'s sent/acknowledged/counted/lost from the accounting; check the sets."""
    outcome.sent = len(accounting.sent)
    outcome.acknowledged = len(accounting.acknowledged)
    outcome.counted = len(accounting.counted)
    outcome.lost = len(accounting.lost)
    outcome.figures["counted_unacknowledged"] = len(accounting.counted_unacknowledged)
    outcome.figures["never_acknowledged"] = len(accounting.sent - accounting.acknowledged)
    unexpected = accounting.unexpected
    outcome.check(
        "nothing_unsent_stored", not unexpected, f"{len(unexpected)} e.g. {sorted(unexpected)[:3]}"
    )
    if accounting.lost:
        outcome.notes.append(f"lost, e.g.: {sorted(accounting.lost)[:5]}")


def stored_event_ids(database_url: str) -> set[str]:
    """Every ``event_id`` in the ``events`` table (plain SQL, PostgreSQL)."""
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


def reports_money(amount_minor: int) -> str:
    """Minor units of the reporting currency (USD) as a decimal string."""
    sign = "-" if amount_minor < 0 else ""
    whole, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{whole}.{cents:02d}"
