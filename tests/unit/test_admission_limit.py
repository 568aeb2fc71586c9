"""The ingest admission limit: additive increase on fast answers, one cut per slow interval."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.admission import BACKOFF, AimdLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_answer_cuts_the_limit_once_per_target_interval() -> None:
    clock = Clock()
    limit = AimdLimit(128, minimum=8, target_s=1.0, clock=clock)
    assert limit.admits(127) and not limit.admits(128)
    limit.observe(2.0)
    assert limit.value == 128 * BACKOFF
    limit.observe(5.0)  # the same slow wave: no second cut
    assert limit.value == 128 * BACKOFF
    clock.now = 1.0
    limit.observe(2.0)
    assert limit.value == 128 * BACKOFF**2


def test_the_limit_falls_to_its_minimum_and_climbs_back_with_fast_answers() -> None:
    clock = Clock()
    limit = AimdLimit(128, minimum=8, target_s=1.0, clock=clock)
    for second in range(30):
        clock.now = float(second)
        limit.observe(3.0)
    assert limit.value == 8 and limit.admits(7) and not limit.admits(8)
    fast = 0
    while limit.value < 128:
        limit.observe(0.01)
        fast += 1
    assert limit.value == 128
    assert 8_000 < fast < 9_000  # about the sum of the limits passed: one step per limit


def test_a_maximum_below_the_minimum_is_the_limit() -> None:
    limit = AimdLimit(2, minimum=8, clock=Clock())
    limit.observe(10.0)
    assert int(limit.value) == 2


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 5)), max_size=200))
def test_the_limit_stays_within_its_bounds(answers: list[tuple[float, float]]) -> None:
    clock = Clock()
    limit = AimdLimit(64, minimum=4, target_s=1.0, clock=clock)
    for service_s, later in answers:
        clock.now += later
        limit.observe(service_s)
        assert 4 <= limit.value <= 64
