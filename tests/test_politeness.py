"""Tests for downloader.politeness: the pure core with a fake clock, then both adapters in real (short) time."""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections.abc import Callable

import pytest

from downloader.politeness import (
    MIN_BURST,
    AsyncPoliteness,
    HostPolicy,
    Stopped,
    ThreadPoliteness,
    TokenBucket,
    outcome_for_status,
)

KiB = 1024
MiB = 1024 * 1024


# --- outcome_for_status ---------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    (200, "ok"), (206, "ok"), (304, "ok"), (404, "ok"), (416, "ok"),
    (429, "throttled"), (503, "throttled"),
    (500, "error"), (502, "error"), (504, "error"),
], ids=str)
def test_outcome_for_status(status: int, expected: str) -> None:
    """429 and 503 throttle, other 5xx say nothing, every other answer counts as a success."""
    assert expected == outcome_for_status(status)


# --- TokenBucket ------------------------------------------------------------------------


def test_bucket_default_burst() -> None:
    """The default burst is a tenth of a second of traffic, and never under MIN_BURST."""
    assert (2 * MiB / 10, float(MIN_BURST)) == (TokenBucket(2 * MiB).burst, TokenBucket(100 * KiB).burst)


def test_bucket_starts_full_then_charges_for_every_byte() -> None:
    """The first burst goes out at once; a byte more waits for its own refill time."""
    bucket = TokenBucket(1000, burst=500)

    assert 0.0 == bucket.reserve(500, now=10.0)
    assert 0.1 == pytest.approx(bucket.reserve(100, now=10.0))


def test_bucket_burst_caps_what_an_idle_period_saves() -> None:
    """After a long idle time only ``burst`` tokens are saved, not the whole idle time's worth."""
    bucket = TokenBucket(1000, burst=500)
    bucket.reserve(500, now=0.0)

    assert 0.0 == bucket.reserve(500, now=100.0)
    assert 1.0 == pytest.approx(bucket.reserve(1000, now=100.0))


def test_bucket_debt_queues_later_callers_behind_it() -> None:
    """A reservation larger than the balance goes into debt, and the next caller waits for that debt plus its own bytes."""
    bucket = TokenBucket(1000, burst=0)

    assert 3.0 == pytest.approx(bucket.reserve(3000, now=0.0))
    assert 4.0 == pytest.approx(bucket.reserve(1000, now=0.0))
    assert 2.0 == pytest.approx(bucket.reserve(0, now=2.0))
    assert 0.0 == bucket.reserve(0, now=5.0)


def test_bucket_ignores_a_clock_that_steps_back() -> None:
    """Time going backwards refills nothing (and does not make tokens up later)."""
    bucket = TokenBucket(1000, burst=0)
    bucket.reserve(1000, now=10.0)

    assert 1.0 == pytest.approx(bucket.reserve(0, now=9.0))
    assert 0.5 == pytest.approx(bucket.reserve(0, now=10.5))


def test_bucket_rejects_bad_arguments() -> None:
    """A rate that is not positive and finite, a negative burst and a negative reservation are refused."""
    for rate in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="rate must be"):
            TokenBucket(rate)
    with pytest.raises(ValueError, match="burst must be"):
        TokenBucket(1000, burst=-1)
    with pytest.raises(ValueError, match="negative"):
        TokenBucket(1000).reserve(-1, now=0.0)


def simulate(bucket: TokenBucket, *, consumers: int, chunks: int, chunk: int, gap: float) -> float:
    """Run ``consumers`` transfers on a fake clock, each reserving a chunk, waiting, then working ``gap`` s; return the end time."""
    ready = [(0.0, index) for index in range(consumers)]
    end = 0.0
    for _ in range(chunks):
        now, index = heapq.heappop(ready)
        usable = now + bucket.reserve(chunk, now)
        end = max(end, usable)
        heapq.heappush(ready, (usable + gap, index))
    return end


@pytest.mark.parametrize("consumers", [1, 4, 32])
def test_bucket_sustained_rate_is_the_configured_rate(consumers: int) -> None:
    """Over a long run, any number of transfers sharing the bucket get the configured rate within 1 %."""
    bucket = TokenBucket(1 * MiB)
    chunks, chunk = 20_000, 16 * KiB

    end = simulate(bucket, consumers=consumers, chunks=chunks, chunk=chunk, gap=0.002)

    assert 1 * MiB == pytest.approx(chunks * chunk / end, rel=0.01)


def test_bucket_each_transfer_waits_only_for_its_own_bytes() -> None:
    """A small reservation made while the bucket is in credit is not held up by a big one made earlier by another transfer."""
    bucket = TokenBucket(1000, burst=1000)

    big = bucket.reserve(900, now=0.0)
    small = bucket.reserve(100, now=0.0)

    assert (0.0, 0.0) == (big, small)
    assert 5.0 == pytest.approx(bucket.reserve(5000, now=0.0))


# --- HostPolicy -------------------------------------------------------------------------


def test_policy_caps_connections_per_host() -> None:
    """Up to per_host slots are given; the next caller is told to wait for a release (inf)."""
    policy = HostPolicy(2)

    assert [None, None, math.inf] == [policy.try_acquire("a", 0.0) for _ in range(3)]
    assert (2, 2) == (policy.active("a"), policy.limit("a"))


def test_policy_lone_host_borrows_up_to_the_ceiling() -> None:
    """With a ceiling, a host alone takes slots beyond per_host up to the ceiling, and no more."""
    policy = HostPolicy(2, ceiling=5)

    assert [None] * 5 + [math.inf] == [policy.try_acquire("a", 0.0) for _ in range(6)]
    assert (5, 2) == (policy.active("a"), policy.limit("a"))


def test_policy_no_borrowing_while_another_host_has_a_slot() -> None:
    """Once a second host holds a slot, the first gets no slot beyond per_host until it is alone again."""
    policy = HostPolicy(2, ceiling=6)
    borrowed = [policy.try_acquire("a", 0.0) for _ in range(4)]
    others = [policy.try_acquire("b", 0.0) for _ in range(3)]

    assert [None] * 4 == borrowed
    assert [None, None, math.inf] == others  # b is held to per_host: a has slots
    for _ in range(2):
        policy.release("a", outcome="ok", now=1.0)
    assert math.inf == policy.try_acquire("a", 1.0)  # a is back at per_host, b still busy
    for _ in range(2):
        policy.release("b", outcome="ok", now=2.0)
    assert None is policy.try_acquire("a", 2.0)  # alone again: borrows


def test_policy_throttled_host_borrows_nothing() -> None:
    """A host whose limit a 429 cut stays under that limit, alone or not, until it has recovered."""
    policy = HostPolicy(4, ceiling=8)
    policy.try_acquire("a", 0.0)
    policy.release("a", outcome="throttled", now=0.0, retry_after=1.0)

    assert [None, None, math.inf] == [policy.try_acquire("a", 2.0) for _ in range(3)]


def test_policy_ceiling_below_per_host_is_refused() -> None:
    """A ceiling under per_host makes no sense and is refused."""
    with pytest.raises(ValueError, match="ceiling"):
        HostPolicy(4, ceiling=3)


def test_policy_release_frees_a_slot() -> None:
    """A released slot can be taken again."""
    policy = HostPolicy(1)
    policy.try_acquire("a", 0.0)
    policy.release("a", outcome="ok", now=1.0)

    assert None is policy.try_acquire("a", 1.0)


def test_policy_throttle_halves_and_pauses_until_retry_after() -> None:
    """A throttled answer halves the host's limit and pauses it for exactly Retry-After seconds."""
    policy = HostPolicy(8)
    policy.try_acquire("a", 10.0)
    policy.release("a", outcome="throttled", now=10.0, retry_after=2.0)

    assert 4 == policy.limit("a")
    assert [2.0, 0.5] == [policy.try_acquire("a", 10.0), policy.try_acquire("a", 11.5)]
    assert None is policy.try_acquire("a", 12.0)


def test_policy_throttle_without_retry_after_uses_the_default_pause() -> None:
    """Without Retry-After the host is paused for the policy's default pause."""
    policy = HostPolicy(4, pause=5.0)
    policy.try_acquire("a", 0.0)
    policy.release("a", outcome="throttled", now=0.0)

    assert 5.0 == policy.try_acquire("a", 0.0)


def test_policy_pause_is_capped_by_max_pause() -> None:
    """A Retry-After longer than max_pause pauses the host for max_pause only; a negative one for nothing."""
    policy = HostPolicy(4, pause=1.0, max_pause=30.0)
    policy.try_acquire("a", 0.0)
    policy.try_acquire("b", 0.0)
    policy.release("a", outcome="throttled", now=0.0, retry_after=86_400.0)
    policy.release("b", outcome="throttled", now=0.0, retry_after=-3.0)

    assert (30.0, 0.0) == (policy.paused_for("a", 0.0), policy.paused_for("b", 0.0))


def test_policy_limit_never_drops_below_one() -> None:
    """Repeated throttling halves the limit down to 1 and no further."""
    policy = HostPolicy(3)
    limits = []
    for step in range(3):
        now = 10.0 * step
        policy.try_acquire("a", now)
        policy.release("a", outcome="throttled", now=now, retry_after=1.0)
        limits.append(policy.limit("a"))

    assert [1, 1, 1] == limits


def test_policy_recovers_one_slot_per_success() -> None:
    """After the pause each success gives one slot back, up to per_host and no further."""
    policy = HostPolicy(8)
    policy.try_acquire("a", 0.0)
    policy.release("a", outcome="throttled", now=0.0, retry_after=1.0)
    limits = []
    for step in range(6):
        now = 2.0 + step
        policy.try_acquire("a", now)
        policy.release("a", outcome="ok", now=now)
        limits.append(policy.limit("a"))

    assert [5, 6, 7, 8, 8, 8] == limits


def test_policy_errors_change_nothing() -> None:
    """An error outcome neither lowers nor raises the limit."""
    policy = HostPolicy(8)
    policy.try_acquire("a", 0.0)
    policy.try_acquire("a", 0.0)
    policy.release("a", outcome="throttled", now=0.0, retry_after=1.0)
    policy.release("a", outcome="error", now=2.0)

    assert (4, 0) == (policy.limit("a"), policy.active("a"))


def test_policy_throttles_in_flight_together_halve_once() -> None:
    """Answers from connections opened before the pause neither halve the limit again nor win slots back during it."""
    policy = HostPolicy(8)
    for _ in range(8):
        policy.try_acquire("a", 0.0)
    for _ in range(4):
        policy.release("a", outcome="throttled", now=1.0, retry_after=5.0)
    for _ in range(4):
        policy.release("a", outcome="ok", now=2.0)

    assert (4, 0, 4.0) == (policy.limit("a"), policy.active("a"), policy.paused_for("a", 2.0))


def test_policy_later_retry_after_extends_the_pause() -> None:
    """A second throttled answer during a pause keeps the later of the two ends."""
    policy = HostPolicy(4)
    policy.try_acquire("a", 0.0)
    policy.try_acquire("a", 0.0)
    policy.release("a", outcome="throttled", now=0.0, retry_after=2.0)
    policy.release("a", outcome="throttled", now=1.0, retry_after=5.0)

    assert 6.0 == policy.try_acquire("a", 0.0)


def test_policy_other_hosts_are_unaffected() -> None:
    """A host that throttles slows only itself: another host keeps its full limit and no pause."""
    policy = HostPolicy(4)
    policy.try_acquire("a", 0.0)
    policy.release("a", outcome="throttled", now=0.0, retry_after=60.0)

    assert [None] * 4 + [math.inf] == [policy.try_acquire("b", 1.0) for _ in range(5)]
    assert (2, 4) == (policy.limit("a"), policy.limit("b"))


def test_policy_release_without_acquire_is_an_error() -> None:
    """Releasing a slot that was never taken is a bug in the caller, and says so."""
    policy = HostPolicy(2)

    with pytest.raises(RuntimeError, match="no connection slot"):
        policy.release("a", outcome="ok", now=0.0)


def test_policy_rejects_unknown_outcomes_and_bad_arguments() -> None:
    """An outcome outside ok/throttled/error, per_host under 1 and a pause over max_pause are refused."""
    policy = HostPolicy(2)
    policy.try_acquire("a", 0.0)
    with pytest.raises(ValueError, match="outcome"):
        policy.release("a", outcome="fine", now=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_host"):
        HostPolicy(0)
    with pytest.raises(ValueError, match="pause"):
        HostPolicy(2, pause=10.0, max_pause=5.0)


def test_policy_forgets_hosts_that_never_throttled() -> None:
    """After 100,000 distinct hosts, each fetched once, the policy keeps no entry at all."""
    policy = HostPolicy(4)
    for index in range(100_000):
        host = f"host{index}.test:80"
        policy.try_acquire(host, float(index))
        policy.release(host, outcome="ok", now=float(index))

    assert 0 == len(policy)


def test_policy_sweeps_throttled_hosts_once_idle_long_enough() -> None:
    """Hosts left idle at a reduced limit are forgotten forget_after seconds later, so the table stays small."""
    policy = HostPolicy(4, pause=1.0, forget_after=60.0)
    for index in range(100_000):
        host, now = f"host{index}.test:80", index / 100
        policy.try_acquire(host, now)
        policy.release(host, outcome="throttled", now=now)

    # Hosts of the last 60 s (6,000) are kept, plus at most as many again before the next sweep.
    assert len(policy) <= 2 * 6_000 + 2


def test_policy_keeps_a_paused_host_until_its_pause_ends() -> None:
    """A paused host is never forgotten early: a sweep keeps it, and its pause still holds."""
    policy = HostPolicy(1, pause=1.0, max_pause=1000.0, forget_after=0.0)
    policy.try_acquire("slow", 0.0)
    policy.release("slow", outcome="throttled", now=0.0, retry_after=500.0)
    for index in range(5_000):
        policy.try_acquire(f"h{index}", 1.0)
        policy.release(f"h{index}", outcome="ok", now=1.0)

    assert 499.0 == policy.try_acquire("slow", 1.0)


# --- adapters: shared scenarios ----------------------------------------------------------


class Gauge:
    """Counts connections open at once and remembers the highest count (thread-safe)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


def expected_spend_time(rate: int, total: int) -> float:
    """Seconds to spend ``total`` bytes through a fresh bucket: the default burst goes out at once."""
    return (total - TokenBucket(rate).burst) / rate


# --- AsyncPoliteness ------------------------------------------------------------------------


def test_async_caps_one_host_while_another_proceeds() -> None:
    """Twelve tasks for host A with per_host 3 never have more than 3 slots, while a task for B gets one at once."""
    gauge = Gauge()

    async def fetch_a(politeness: AsyncPoliteness) -> None:
        async with politeness.host("a"):
            gauge.enter()
            await asyncio.sleep(0.1)
            gauge.leave()

    async def main() -> float:
        politeness = AsyncPoliteness(3, None)
        async with asyncio.TaskGroup() as tasks:
            for _ in range(12):
                tasks.create_task(fetch_a(politeness))
            await asyncio.sleep(0.005)  # A's slots are all taken and nine tasks queue
            start = time.monotonic()
            async with politeness.host("b"):
                waited = elapsed_since(start)
        assert (0, 0) == (politeness.policy.active("a"), len(politeness.policy))
        return waited

    waited_b = asyncio.run(main())

    assert 3 == gauge.peak
    assert waited_b < 0.05  # a B stuck behind A would wait 0.1 s or more


def test_async_waiters_get_slots_in_arrival_order() -> None:
    """Waiters for a host are served first come, first served, and a cancelled waiter gives up its place."""
    order: list[int] = []

    async def fetch(politeness: AsyncPoliteness, index: int) -> None:
        async with politeness.host("a"):
            order.append(index)
            await asyncio.sleep(0.001)

    async def main() -> None:
        politeness = AsyncPoliteness(1, None)
        async with politeness.host("a"):
            tasks = []
            for index in range(5):
                tasks.append(asyncio.create_task(fetch(politeness, index)))
                await asyncio.sleep(0)  # let it reach the queue
            tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert 0 == politeness.policy.active("a")

    asyncio.run(main())

    assert [0, 1, 3, 4] == order


def test_async_slot_handed_to_a_cancelled_waiter_goes_to_the_next() -> None:
    """A waiter cancelled just after a slot was handed to it gives the slot back, and the next waiter gets it."""
    async def hold(politeness: AsyncPoliteness) -> None:
        async with politeness.host("a"):
            await asyncio.sleep(0)

    async def main() -> None:
        politeness = AsyncPoliteness(1, None)
        async with politeness.host("a"):
            first = asyncio.create_task(hold(politeness))
            second = asyncio.create_task(hold(politeness))
            await asyncio.sleep(0)  # both are queued
        first.cancel()  # the slot was handed over on release, but `first` has not run yet
        await asyncio.wait_for(second, timeout=1.0)
        with pytest.raises(asyncio.CancelledError):
            await first
        assert (0, 0) == (politeness.policy.active("a"), len(politeness.policy))

    asyncio.run(main())


def test_async_throttle_pauses_only_that_host() -> None:
    """A throttled answer pauses host A until its Retry-After, while host B keeps getting slots at once."""
    async def main() -> tuple[float, float]:
        politeness = AsyncPoliteness(2, None)
        async with politeness.host("a") as slot:
            slot.outcome("throttled", retry_after=0.3)
        assert 1 == politeness.policy.limit("a")
        start = time.monotonic()
        waiter = asyncio.create_task(hold(politeness, "a"))
        slowest_b = 0.0
        while not waiter.done():
            begin = time.monotonic()
            async with politeness.host("b"):
                slowest_b = max(slowest_b, elapsed_since(begin))
                await asyncio.sleep(0.01)
        return elapsed_since(start), slowest_b

    async def hold(politeness: AsyncPoliteness, host: str) -> None:
        async with politeness.host(host):
            pass

    waited_a, slowest_b = asyncio.run(main())

    assert 0.28 <= waited_a < 0.6
    assert slowest_b < 0.1  # a B stuck behind A would wait 0.3 s


def test_async_rate_limit_paces_all_tasks_together() -> None:
    """Four tasks spending 2 MiB in total at 4 MiB/s take (2 MiB - burst) / 4 MiB/s, within 15 %."""
    rate, total = 4 * MiB, 2 * MiB

    async def transfer(politeness: AsyncPoliteness) -> None:
        for _ in range(total // 4 // (16 * KiB)):
            await politeness.spend(16 * KiB)

    async def main() -> float:
        politeness = AsyncPoliteness(4, rate)
        start = time.monotonic()
        await asyncio.gather(*(transfer(politeness) for _ in range(4)))
        return elapsed_since(start)

    took = asyncio.run(main())

    assert expected_spend_time(rate, total) == pytest.approx(took, rel=0.15)


# --- ThreadPoliteness ---------------------------------------------------------------------


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Run each target in its own thread and wait for all of them (a few seconds at most)."""
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5.0)
    assert not any(thread.is_alive() for thread in threads)


def test_threads_cap_one_host_while_another_proceeds() -> None:
    """Twelve threads for host A with per_host 3 never have more than 3 slots, while a thread for B gets one at once."""
    politeness = ThreadPoliteness(3, None)
    gauge = Gauge()
    queued = threading.Barrier(13)
    waited_b: list[float] = []

    def fetch_a() -> None:
        queued.wait()
        with politeness.host("a"):
            gauge.enter()
            time.sleep(0.1)
            gauge.leave()

    def fetch_b() -> None:
        queued.wait()
        time.sleep(0.005)  # A's slots are all taken and nine threads queue
        start = time.monotonic()
        with politeness.host("b"):
            waited_b.append(elapsed_since(start))

    run_threads([fetch_a] * 12 + [fetch_b])

    assert 3 == gauge.peak
    assert waited_b[0] < 0.05  # a B stuck behind A would wait 0.1 s or more
    assert (0, 0) == (politeness.policy.active("a"), len(politeness.policy))


def test_threads_throttle_pauses_only_that_host() -> None:
    """A throttled answer pauses host A until its Retry-After, while host B keeps getting slots at once."""
    politeness = ThreadPoliteness(2, None)
    with politeness.host("a") as slot:
        slot.outcome("throttled", retry_after=0.3)
    assert 1 == politeness.policy.limit("a")
    done = threading.Event()
    waited_a: list[float] = []
    slowest_b = 0.0

    def fetch_a() -> None:
        start = time.monotonic()
        with politeness.host("a"):
            waited_a.append(elapsed_since(start))
        done.set()

    thread = threading.Thread(target=fetch_a)
    thread.start()
    while not done.is_set():
        begin = time.monotonic()
        with politeness.host("b"):
            slowest_b = max(slowest_b, elapsed_since(begin))
            time.sleep(0.01)
    thread.join(timeout=5.0)

    assert 0.28 <= waited_a[0] < 0.6
    assert slowest_b < 0.1  # a B stuck behind A would wait 0.3 s


def test_threads_rate_limit_paces_all_threads_together() -> None:
    """Four threads spending 2 MiB in total at 4 MiB/s take (2 MiB - burst) / 4 MiB/s, within 15 %."""
    rate, total = 4 * MiB, 2 * MiB
    politeness = ThreadPoliteness(4, rate)

    def transfer() -> None:
        for _ in range(total // 4 // (16 * KiB)):
            politeness.spend(16 * KiB)

    start = time.monotonic()
    run_threads([transfer] * 4)

    assert expected_spend_time(rate, total) == pytest.approx(elapsed_since(start), rel=0.15)


def test_threads_stop_interrupts_a_slot_waiter() -> None:
    """Setting stop makes a thread waiting for a host slot raise Stopped within 0.1 s, and leaves the line clean."""
    stop = threading.Event()
    politeness = ThreadPoliteness(1, None, stop=stop)
    outcome: list[float] = []

    def waiter() -> None:
        with pytest.raises(Stopped):
            with politeness.host("a"):
                pass
        outcome.append(time.monotonic())

    with politeness.host("a"):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.05)
        stopped_at = time.monotonic()
        stop.set()
        thread.join(timeout=1.0)

    assert outcome[0] - stopped_at < 0.1
    assert (0, 0) == (politeness.policy.active("a"), len(politeness.policy))


def test_threads_stop_interrupts_spend_with_the_given_exception() -> None:
    """Setting stop ends a thread's wait for its bytes at once, raising the exception type the engine gave."""
    class Interrupted(BaseException):
        pass

    stop = threading.Event()
    politeness = ThreadPoliteness(1, 1000, stop=stop, interrupt=Interrupted, burst=0)
    timings: list[float] = []

    def spender() -> None:
        with pytest.raises(Interrupted):
            politeness.spend(10_000)  # ten seconds' worth
        timings.append(time.monotonic())

    thread = threading.Thread(target=spender)
    thread.start()
    time.sleep(0.05)
    stopped_at = time.monotonic()
    stop.set()
    thread.join(timeout=1.0)

    assert timings[0] - stopped_at < 0.1
