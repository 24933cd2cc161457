"""confirm_flush: asks again after a refusal, with growing pauses, and fails clearly when it never flushes."""

import pytest

from fastcomt.rollout.cache_flush import CacheFlushError, confirm_flush


def test_refusals_are_retried_with_doubling_pauses():
    answers, pauses = iter([False, False, False, True]), []
    assert confirm_flush(lambda: next(answers), what="srv", delay=0.1, sleep=pauses.append) == 4
    assert pauses == pytest.approx([0.1, 0.2, 0.4])


def test_a_backend_that_never_flushes_is_named_in_the_error():
    pauses = []
    with pytest.raises(
        CacheFlushError, match="http://a:1/flush_cache: the prefix cache was not flushed after 3 attempts"
    ):
        confirm_flush(lambda: False, what="http://a:1/flush_cache", attempts=3, delay=0.7, sleep=pauses.append)
    assert pauses == pytest.approx([0.7, 1.0])  # capped at 1 s; no pause after the last refusal


def test_errors_of_the_flush_itself_propagate_and_attempts_are_checked():
    def boom() -> bool:
        raise OSError("gone")

    with pytest.raises(OSError, match="gone"):
        confirm_flush(boom, what="x", sleep=lambda s: None)
    with pytest.raises(ValueError, match="attempts: expected an int >= 1, got 0"):
        confirm_flush(lambda: True, what="x", attempts=0)
