"""The lag of one partition from its first and end offsets and the applied one."""

from __future__ import annotations

from services.api.consumer_lag import partition_lag


def test_lag_is_the_end_minus_the_applied_offset() -> None:
    assert partition_lag(0, 100, 40) == 60
    assert partition_lag(0, 100, 100) == 0


def test_never_applied_lags_from_the_first_record() -> None:
    assert partition_lag(0, 100, None) == 100
    assert partition_lag(30, 100, None) == 70  # records before 30 are gone (retention)
    assert partition_lag(30, 100, 10) == 70  # and can never be applied


def test_an_applied_offset_past_the_end_means_the_log_was_reset() -> None:
    # The bundled broker restarted empty: nothing of the new log is applied yet.
    assert partition_lag(0, 5, 500) == 5
    assert partition_lag(0, 0, 500) == 0
