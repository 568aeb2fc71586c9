"""The consumer lag as ``/metrics`` shows it, turned into events by the topic's own records.

``/metrics`` counts lag in records (``closedloop_consumer_lag_records{topic,partition}``);
ingest publishes batch records of many events. ``TopicRecords`` reads every record of the topic
once, before any worker runs, and keeps how many events each holds, so a partition's lag of
``n`` records (its last ``n``: every record past the applied offset) is exactly a number of
events. Nothing here comes from the service: the records are counted by reading them.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from itertools import accumulate

import httpx
import orjson
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

LAG = "closedloop_consumer_lag_records"
UP = "closedloop_consumer_lag_up"


@dataclass
class TopicRecords:
    """Per partition: each record's offset and the events before it (running total)."""

    offsets: dict[int, list[int]] = field(default_factory=dict)
    before: dict[int, list[int]] = field(default_factory=dict)  # one more entry than offsets

    @classmethod
    def read(cls, bootstrap: str, topic: str, partitions: int, *, timeout_s: float) -> TopicRecords:
        """Read every record of ``topic`` from the start up to each partition's high watermark."""
        reader = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000
        )
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        offsets: dict[int, list[int]] = {p: [] for p in range(partitions)}
        sizes: dict[int, list[int]] = {p: [] for p in range(partitions)}
        reader.assign(parts)
        reader.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout_s
        try:
            while not all(
                (mark := reader.highwater(tp)) is not None and reader.position(tp) >= mark
                for tp in parts
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic} not read in {timeout_s:.0f} s")
                for tp, records in reader.poll(timeout_ms=200).items():
                    for record in records:
                        value = orjson.loads(record.value)
                        offsets[tp.partition].append(record.offset)
                        sizes[tp.partition].append(len(value) if isinstance(value, list) else 1)
        finally:
            reader.close()
        before = {p: [0, *accumulate(s)] for p, s in sizes.items()}
        return cls(offsets, before)

    def records(self) -> dict[int, int]:
        return {p: len(o) for p, o in self.offsets.items()}

    def events(self) -> int:
        return sum(b[-1] for b in self.before.values())

    def events_in_lag(self, lags: dict[int, int]) -> int:
        """Events in the records a partition's lag counts: those from ``end - lag`` on."""
        total = 0
        for p, lag in lags.items():
            offsets, before = self.offsets.get(p, []), self.before.get(p, [0])
            end = offsets[-1] + 1 if offsets else 0
            total += before[-1] - before[bisect.bisect_left(offsets, end - lag)]
        return total


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` answer: the lag per partition (None: not reported), and its latency."""

    at: float  # time.monotonic() when it was answered
    latency_s: float
    lags: dict[int, int] | None
    up: float | None


def scrape(client: httpx.Client, url: str, topic: str) -> Scrape:
    """Scrape ``url`` once; a failed request or status is a scrape without lag."""
    started = time.monotonic()
    try:
        response = client.get(url)
        response.raise_for_status()
    except httpx.HTTPError:
        return Scrape(time.monotonic(), time.monotonic() - started, None, None)
    answered = time.monotonic()
    lags: dict[int, int] = {}
    up = None
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == LAG and sample.labels.get("topic") == topic:
                lags[int(sample.labels["partition"])] = int(sample.value)
            elif sample.name == UP:
                up = sample.value
    return Scrape(answered, answered - started, lags if up == 1.0 else None, up)


def first_scrape(client: httpx.Client, url: str, topic: str, timeout_s: float = 30) -> Scrape:
    """The first scrape that reports the lag (the API's client connects on the first one)."""
    deadline = time.monotonic() + timeout_s
    while (got := scrape(client, url, topic)).lags is None and time.monotonic() < deadline:
        time.sleep(1.0)
    return got
