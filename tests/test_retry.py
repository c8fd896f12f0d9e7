"""Unit tests for downloader.retry (backoff with full jitter, Retry-After) and downloader.config validation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from downloader.config import DEFAULT_CHUNK_SIZE, Config
from downloader.errors import (
    BodyIncomplete,
    ConnectError,
    HTTPStatusError,
    IntegrityError,
    InvalidJob,
    LocalIOError,
    RetriesExhausted,
    StallTimeout,
    TransferError,
)
from downloader.retry import RetryState

URL = "http://example.test/f.bin"


class TopRng:
    """A stand-in for random.Random whose uniform() records its bounds and returns the upper one."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b


def state(retries: int = 5, base: float = 0.5, cap: float = 30.0, max_wait: float = 300.0) -> RetryState:
    """A fresh RetryState built through Config, as the engines build it."""
    return RetryState.from_config(Config(retries=retries, backoff_base=base, backoff_cap=cap, max_wait=max_wait))


def transient() -> ConnectError:
    return ConnectError(URL, "connection refused")


def unavailable(retry_after: float | None = None) -> HTTPStatusError:
    return HTTPStatusError(URL, "HTTP 503 Service Unavailable", 503, True, retry_after)


# --- from_config ----------------------------------------------------------------------

def test_from_config_copies_the_policy():
    """from_config takes retries, backoff and max_wait from the Config and starts at attempt 1 with no delay."""
    retry = RetryState.from_config(Config(retries=3, backoff_base=0.25, backoff_cap=8.0, max_wait=60.0))
    assert (retry.retries, retry.base, retry.cap, retry.max_wait) == (3, 0.25, 8.0, 60.0)
    assert (retry.attempts, retry.delay, retry.integrity_retried) == (1, 0.0, False)


# --- transient errors -------------------------------------------------------------------

@pytest.mark.parametrize(
    "error",
    [
        ConnectError(URL, "refused"),
        StallTimeout(URL, "stalled"),
        BodyIncomplete(URL, "short"),
        TransferError(URL, "other"),
        HTTPStatusError(URL, "HTTP 503", 503, True),
        HTTPStatusError(URL, "HTTP 429", 429, True),
    ],
    ids=["connect", "stall", "body-incomplete", "transfer", "http-503", "http-429"],
)
def test_transient_error_is_retried(error):
    """A transient error gives the next attempt's state."""
    after = state().increment(error, random.Random(1))
    assert after.attempts == 2


def test_increment_returns_a_new_state_and_keeps_the_old_one():
    """increment does not change the state it is called on."""
    before = state()
    after = before.increment(transient(), random.Random(1))
    assert (before.attempts, before.delay) == (1, 0.0)
    assert after is not before


@pytest.mark.parametrize(
    ("attempts", "ceiling"),
    [
        pytest.param(1, 0.5, id="retry-1"),
        pytest.param(2, 1.0, id="retry-2"),
        pytest.param(3, 2.0, id="retry-3"),
        pytest.param(4, 4.0, id="retry-4-reaches-cap"),
        pytest.param(5, 4.0, id="retry-5-capped"),
        pytest.param(9, 4.0, id="retry-9-capped"),
    ],
)
def test_backoff_ceiling_doubles_up_to_the_cap(attempts, ceiling):
    """Before retry n the wait is drawn from [0, min(cap, base * 2**(n-1))]."""
    rng = TopRng()
    retry = state(retries=20, base=0.5, cap=4.0)
    for _ in range(attempts - 1):
        retry = retry.increment(transient(), rng)
    retry = retry.increment(transient(), rng)
    assert rng.calls[-1] == (0.0, ceiling)
    assert retry.delay == ceiling
    assert retry.attempts == attempts + 1


def test_backoff_is_full_jitter_from_zero():
    """Delays drawn with a real generator spread over [0, ceiling], not just near the ceiling."""
    rng = random.Random(2024)
    delays = [state(base=2.0, cap=2.0).increment(transient(), rng).delay for _ in range(200)]
    assert all(0.0 <= d <= 2.0 for d in delays)
    assert min(delays) < 0.2 and max(delays) > 1.8


def test_backoff_is_reproducible_with_a_seeded_rng():
    """The same seed gives the same delay."""
    first = state().increment(transient(), random.Random(7)).delay
    second = state().increment(transient(), random.Random(7)).delay
    assert first == second


def test_backoff_without_rng_uses_module_random():
    """Without an rng the delay still lies in [0, base]."""
    delay = state(base=0.5).increment(transient()).delay
    assert 0.0 <= delay <= 0.5


def test_zero_backoff_base_means_no_wait():
    """backoff_base=0 retries at once."""
    assert state(base=0.0).increment(transient(), TopRng()).delay == 0.0


def test_backoff_with_many_retries_does_not_overflow():
    """A late retry of a long policy still waits at most the cap instead of overflowing a float."""
    retry = RetryState(retries=5000, base=0.5, cap=30.0, max_wait=300.0, attempts=1100)
    after = retry.increment(transient(), TopRng())
    assert (after.attempts, after.delay) == (1101, 30.0)


# --- running out of retries -------------------------------------------------------------

def test_retries_allow_exactly_retries_more_attempts():
    """With retries=2 the third failure raises RetriesExhausted after 3 attempts."""
    retry = state(retries=2)
    retry = retry.increment(transient(), TopRng())
    retry = retry.increment(transient(), TopRng())
    assert retry.attempts == 3
    error = transient()
    with pytest.raises(RetriesExhausted) as info:
        retry.increment(error, TopRng())
    assert (info.value.attempts, info.value.url) == (3, URL)
    assert info.value.__cause__ is error


def test_zero_retries_fails_on_first_error():
    """With retries=0 the first transient error is final."""
    error = transient()
    with pytest.raises(RetriesExhausted) as info:
        state(retries=0).increment(error, TopRng())
    assert info.value.attempts == 1
    assert info.value.__cause__ is error


def test_retries_exhausted_names_the_last_error():
    """The RetriesExhausted message carries the last error's reason and the attempt count."""
    with pytest.raises(RetriesExhausted) as info:
        state(retries=0).increment(ConnectError(URL, "connection refused"), TopRng())
    assert "connection refused" in str(info.value)
    assert "1 attempt" in str(info.value)


# --- errors that are not retried --------------------------------------------------------

@pytest.mark.parametrize(
    "error",
    [
        HTTPStatusError(URL, "HTTP 404 Not Found", 404, False),
        HTTPStatusError(URL, "HTTP 301 redirect not followed", 301, False),
        InvalidJob(URL, "bad line"),
        LocalIOError(URL, "disk full"),
        RetriesExhausted(URL, "gave up", 3),
    ],
    ids=["http-404", "http-301", "invalid-job", "local-io", "retries-exhausted"],
)
def test_non_retryable_error_is_raised_as_is(error):
    """A non-retryable error is raised unchanged, not wrapped."""
    with pytest.raises(type(error)) as info:
        state().increment(error, TopRng())
    assert info.value is error


def test_non_retryable_status_is_raised_even_with_retries_left():
    """A 404 is final on the first attempt although retries remain."""
    error = HTTPStatusError(URL, "HTTP 404 Not Found", 404, False)
    with pytest.raises(HTTPStatusError) as info:
        state(retries=10).increment(error, TopRng())
    assert info.value is error


# --- Retry-After ------------------------------------------------------------------------

def test_retry_after_is_honoured_exactly():
    """A Retry-After becomes the delay, with no jitter and no draw from the rng."""
    rng = TopRng()
    after = state().increment(unavailable(12.0), rng)
    assert after.delay == 12.0
    assert rng.calls == []


def test_retry_after_may_exceed_backoff_cap():
    """Retry-After is not limited by backoff_cap, only by max_wait."""
    assert state(cap=1.0, max_wait=100.0).increment(unavailable(50.0), TopRng()).delay == 50.0


def test_retry_after_zero_means_no_wait():
    """Retry-After: 0 retries at once."""
    assert state().increment(unavailable(0.0), TopRng()).delay == 0.0


def test_retry_after_equal_to_max_wait_is_honoured():
    """A Retry-After of exactly max_wait seconds is still waited for."""
    assert state(max_wait=60.0).increment(unavailable(60.0), TopRng()).delay == 60.0


def test_retry_after_beyond_max_wait_fails_at_once():
    """A Retry-After longer than max_wait raises a non-retryable HTTPStatusError from the error."""
    error = unavailable(61.0)
    with pytest.raises(HTTPStatusError) as info:
        state(max_wait=60.0).increment(error, TopRng())
    raised = info.value
    assert raised is not error
    assert (raised.status, raised.retryable, raised.retry_after, raised.url) == (503, False, 61.0, URL)
    assert raised.__cause__ is error
    assert "max wait" in str(raised)


def test_retry_after_beyond_max_wait_is_not_retryable_afterwards():
    """The error raised for a too-long Retry-After is itself final when fed back."""
    with pytest.raises(HTTPStatusError) as info:
        state(max_wait=1.0).increment(unavailable(5.0), TopRng())
    with pytest.raises(HTTPStatusError) as again:
        state().increment(info.value, TopRng())
    assert again.value is info.value


# --- IntegrityError ---------------------------------------------------------------------

def integrity() -> IntegrityError:
    return IntegrityError(URL, "sha256 mismatch", "a" * 64, "b" * 64)


def test_integrity_error_is_retried_once_at_once():
    """A first IntegrityError gives another attempt with no delay."""
    after = state().increment(integrity(), TopRng())
    assert (after.integrity_retried, after.delay) == (True, 0.0)


def test_integrity_error_twice_is_final():
    """A second IntegrityError is raised as is."""
    after = state().increment(integrity(), TopRng())
    error = integrity()
    with pytest.raises(IntegrityError) as info:
        after.increment(error, TopRng())
    assert info.value is error


def test_integrity_error_is_retried_once_even_with_zero_retries():
    """The single integrity retry does not depend on the transient retry budget."""
    after = state(retries=0).increment(integrity(), TopRng())
    assert after.integrity_retried is True


def test_integrity_retry_after_backoff_has_no_delay():
    """An IntegrityError after a backoff wait resets the delay to 0."""
    retry = state(base=4.0, cap=4.0).increment(transient(), TopRng())
    assert retry.delay == 4.0
    assert retry.increment(integrity(), TopRng()).delay == 0.0


# --- Config validation --------------------------------------------------------------------

def test_config_defaults_are_valid():
    """Config() with no argument builds, with the documented defaults."""
    config = Config()
    assert (config.engine, config.concurrency, config.retries, config.chunk_size, config.resume) == (
        "asyncio", 16, 5, DEFAULT_CHUNK_SIZE, True)


def test_config_dest_becomes_a_path():
    """A string dest is turned into a Path."""
    assert Config(dest="out/dir").dest == Path("out/dir")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"engine": "threads"},
        {"concurrency": 1},
        {"retries": 0},
        {"chunk_size": 1024},
        {"backoff_base": 0.0, "backoff_cap": 0.0},
        {"max_wait": 0.0},
        {"timeout": 0.001},
    ],
    ids=["threads", "concurrency-1", "retries-0", "chunk-1024", "backoff-0", "max-wait-0", "tiny-timeout"],
)
def test_config_accepts_boundary_values(kwargs):
    """The smallest allowed values are accepted."""
    config = Config(**kwargs)
    for name, value in kwargs.items():
        assert getattr(config, name) == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("engine", "curl", id="engine"),
        pytest.param("concurrency", 0, id="concurrency-0"),
        pytest.param("concurrency", -3, id="concurrency-negative"),
        pytest.param("retries", -1, id="retries-negative"),
        pytest.param("timeout", 0, id="timeout-0"),
        pytest.param("timeout", -1.5, id="timeout-negative"),
        pytest.param("chunk_size", 1023, id="chunk-too-small"),
        pytest.param("max_wait", -1, id="max-wait-negative"),
        pytest.param("backoff_base", -0.5, id="backoff-base-negative"),
        pytest.param("backoff_cap", -2, id="backoff-cap-negative"),
    ],
)
def test_config_rejects_bad_value_naming_it(field, value):
    """An invalid option raises ValueError whose message names the option and the bad value."""
    with pytest.raises(ValueError) as info:
        Config(**{field: value})
    message = str(info.value)
    assert field in message
    assert str(value) in message


@pytest.mark.parametrize("field", ["timeout", "max_wait", "backoff_base", "backoff_cap"])
def test_config_rejects_nan(field):
    """NaN is not accepted for a time."""
    with pytest.raises(ValueError):
        Config(**{field: float("nan")})


def test_config_is_frozen():
    """A Config cannot be changed after creation."""
    config = Config()
    with pytest.raises(AttributeError):
        config.retries = 9  # type: ignore[misc]
