"""Politeness towards the servers we mirror: connections per host, total bandwidth, backing off when asked.

Three rules, for ``--per-host N`` and ``--limit-rate RATE``:

1. At most ``N`` simultaneous connections to one host (``host:port``) across the run.
   With a ``ceiling`` above ``N`` (the default ``--per-host``), a host that is the
   only one with connections may borrow slots up to the ceiling: a list of one
   host uses all of ``-j``, and as soon as another host has a connection, nobody
   borrows any more (slots come back as transfers end).
2. The run's total bandwidth stays under ``RATE`` bytes per second (a token bucket).
   A transfer waits only for its own bytes: nobody holds a lock while sleeping.
3. A host that answers 429 or 503 is slowed on its own: its limit is halved (at
   least 1) and it is left alone until its ``Retry-After`` (or a default pause);
   then each success gives it back one slot, up to ``N``. Other hosts keep going.

The decisions live in two pure classes that take the time as an argument and never
sleep or lock: :class:`TokenBucket` and :class:`HostPolicy`. Two thin adapters do
the waiting, one per engine, with the same method names::

    async with politeness.host(key) as slot:    # ThreadPoliteness: with ... as slot:
        ...                                     # slot.outcome("throttled", retry_after=2.0)
    await politeness.spend(len(chunk))          # ThreadPoliteness: politeness.spend(n)

Waiting is by notification, not by polling: releasing a slot hands it to the first
waiter of that host (in arrival order), and the end of a pause wakes the host's
waiters. The one exception is the thread adapter's ``stop`` event, which a thread
cannot wait on together with a condition: blocked threads look at it every
:data:`STOP_POLL` seconds.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypedDict, get_args

from downloader.config import Config
from downloader.hosts import host_key  # the key slots are counted by; re-exported for the engines

if TYPE_CHECKING:  # imported where used: the threads engine never loads asyncio
    import asyncio

__all__ = [
    "MIN_BURST",
    "STOP_POLL",
    "THROTTLING_STATUSES",
    "AsyncPoliteness",
    "HostPolicy",
    "HostSlot",
    "Outcome",
    "Settings",
    "Stopped",
    "ThreadPoliteness",
    "TokenBucket",
    "host_key",
    "note_response",
    "outcome_for_status",
    "settings_for",
]

Outcome = Literal["ok", "throttled", "error"]
"""How a connection ended, as far as politeness cares: ``"ok"`` (the server answered
and was not overloaded), ``"throttled"`` (429 or 503) or ``"error"`` (no answer, or
a slot given back unused: says nothing about the server's load)."""

_OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))

THROTTLING_STATUSES = frozenset({429, 503})
"""Statuses by which a server asks us to slow down (RFC 6585 §4, RFC 9110 §15.6.4)."""

MIN_BURST = 64 * 1024
"""The smallest default burst of a :class:`TokenBucket`, in bytes."""

STOP_POLL = 0.05
"""Seconds between two looks at ``stop`` by a thread blocked on a host slot."""

_SWEEP_MIN = 1024  # HostPolicy looks for forgettable hosts only above this many


# --- plain helpers ------------------------------------------------------------------


def outcome_for_status(status: int) -> Outcome:
    """What an answer's status says about the host's load.

    429 and 503 throttle; other 5xx say nothing either way (``"error"``); any other
    answer, 404 included, shows a server that coped (``"ok"``).
    """
    if status in THROTTLING_STATUSES:
        return "throttled"
    return "error" if status >= 500 else "ok"


def _check_outcome(outcome: str) -> None:
    if outcome not in _OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(_OUTCOMES)}, not {outcome!r}")


# --- the pure core -------------------------------------------------------------------


class TokenBucket:
    """The run's bandwidth budget: ``rate`` bytes per second, up to ``burst`` saved up.

    Pure: the caller passes the time, and is told how long to wait. A reservation
    is never refused: the tokens are taken at once, the balance may go negative
    (debt), and the caller waits until the refill has paid for its share. Later
    callers queue behind the debt, so the long-run rate is exactly ``rate`` however
    many transfers share the bucket, and each one waits only for its own bytes.

    The bucket starts full. ``burst`` defaults to a tenth of a second of traffic and
    at least :data:`MIN_BURST`: a transfer that comes back a little late from its
    sleep (a busy event loop, a slow disk write) finds its tokens waiting instead of
    losing them to the cap, so the measured rate does not fall below the limit.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if not (0 < rate < math.inf):
            raise ValueError(f"rate must be a positive number of bytes per second, not {rate!r}")
        if burst is not None and not (0 <= burst < math.inf):
            raise ValueError(f"burst must be a non-negative number of bytes, not {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(self.rate / 10, MIN_BURST)
        self._tokens = self.burst
        self._last: float | None = None  # the time of the first reservation starts the clock

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` tokens at time ``now``; return the seconds to wait before using them (0.0 if none)."""
        if n < 0:
            raise ValueError(f"cannot reserve a negative number of bytes ({n})")
        self._refill(now)
        self._tokens -= n
        return -self._tokens / self.rate if self._tokens < 0 else 0.0

    def _refill(self, now: float) -> None:
        # A clock that steps back (it should not: callers pass a monotonic one) adds nothing.
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now


@dataclass(slots=True)
class _Host:
    """What :class:`HostPolicy` remembers of one host."""

    limit: int
    active: int = 0
    """Slots taken and not yet released (borrowed ones included)."""
    paused_until: float = -math.inf
    seen: float = 0.0
    """When a slot was last taken or given back: idle hosts are forgotten after a while."""


class HostPolicy:
    """How many connections each host may have now, and when a throttled host may be asked again.

    Pure: no clock, no sleep, no lock; every call takes the time ``now``.

    Args:
        per_host: the most connections to one host (``--per-host``), and where recovery stops.
        pause: seconds a throttled host is left alone when its answer had no Retry-After.
        max_pause: the longest pause, whatever Retry-After says: a host asking for a day
            would otherwise hold every job for it (the retry policy fails those URLs).
        forget_after: seconds after which an idle host whose pause is over is forgotten,
            even at a reduced limit (it then starts again at ``per_host``).
        ceiling: when above ``per_host``, the most slots a host may have while no
            other host has any (borrowed slots); a host whose limit was cut by a
            429/503 borrows nothing until it has recovered.

    Memory: a host is dropped as soon as it has no connection, no pause and its full
    limit, which is the case of every host that never throttled; hosts left idle at
    a reduced limit are swept out ``forget_after`` seconds later, so a list of a
    million hosts does not keep a million entries.
    """

    def __init__(self, per_host: int, *, pause: float = 5.0, max_pause: float = 300.0,
                 forget_after: float = 60.0, ceiling: int | None = None) -> None:
        if per_host < 1:
            raise ValueError(f"per_host must be at least 1, not {per_host}")
        if ceiling is not None and ceiling < per_host:
            raise ValueError(f"ceiling must be at least per_host ({per_host}), not {ceiling}")
        if not (0 <= pause <= max_pause):
            raise ValueError(f"need 0 <= pause <= max_pause, not pause={pause}, max_pause={max_pause}")
        if forget_after < 0:
            raise ValueError(f"forget_after must not be negative, not {forget_after}")
        self.per_host = per_host
        self.pause = pause
        self.max_pause = max_pause
        self.forget_after = forget_after
        self.ceiling = ceiling if ceiling is not None else per_host
        self._hosts: dict[str, _Host] = {}
        self._busy = 0  # hosts with at least one slot taken
        self._sweep_at = _SWEEP_MIN

    def __len__(self) -> int:
        """The number of hosts whose state is kept (for tests and reports)."""
        return len(self._hosts)

    def limit(self, host: str) -> int:
        """The connections ``host`` may have now."""
        state = self._hosts.get(host)
        return state.limit if state is not None else self.per_host

    def active(self, host: str) -> int:
        """The connections ``host`` has now (slots taken and not yet released)."""
        state = self._hosts.get(host)
        return state.active if state is not None else 0

    def paused_for(self, host: str, now: float) -> float:
        """Seconds left in ``host``'s pause (0.0 when it is not paused)."""
        state = self._hosts.get(host)
        return max(0.0, state.paused_until - now) if state is not None else 0.0

    def try_acquire(self, host: str, now: float) -> float | None:
        """Take a slot for ``host`` if one is free.

        Returns:
            None when a slot was taken (the caller may connect, and must release);
            else the seconds until the host's pause ends, or ``math.inf`` when every
            slot is in use (wait for a release).
        """
        state = self._hosts.get(host)
        if state is None:
            self._sweep_if_due(now)
            state = _Host(self.per_host)  # stored only once a slot is taken
        if now < state.paused_until:
            return state.paused_until - now
        if state.active >= state.limit and not self._may_borrow(state):
            return math.inf
        if state.active == 0:
            self._busy += 1
        state.active += 1
        state.seen = now
        self._hosts[host] = state
        return None

    def release(self, host: str, *, outcome: Outcome, now: float, retry_after: float | None = None) -> None:
        """Give back a slot of ``host`` and learn from how the connection ended.

        ``"throttled"`` halves the limit (at least 1) and pauses the host for
        ``retry_after`` seconds, or :attr:`pause` when None, at most :attr:`max_pause`.
        ``"ok"`` gives back one slot of a reduced limit. ``"error"`` changes nothing.

        Raises:
            RuntimeError: ``host`` has no slot taken (a release without an acquire).
        """
        _check_outcome(outcome)
        state = self._hosts.get(host)
        if state is None or state.active == 0:
            raise RuntimeError(f"release for {host!r}, which has no connection slot taken")
        state.active -= 1
        if state.active == 0:
            self._busy -= 1
        state.seen = now
        if outcome == "throttled":
            self._throttle(state, now, retry_after)
        elif outcome == "ok" and now >= state.paused_until:
            # A success that ends during the pause began before the host throttled:
            # it says nothing about the new limit, and must not undo the halving.
            state.limit = min(self.per_host, state.limit + 1)
        if state.active == 0 and now >= state.paused_until and state.limit == self.per_host:
            del self._hosts[host]

    def _may_borrow(self, state: _Host) -> bool:
        """A host at its limit may take one more slot: it is alone (no other host has
        a slot), has its full limit (not cut by a throttle) and is under the ceiling."""
        return (state.active < self.ceiling and state.limit == self.per_host
                and self._busy == (1 if state.active else 0))

    def _throttle(self, state: _Host, now: float, retry_after: float | None) -> None:
        # Halve once per pause: the other answers that arrive during it come from
        # connections opened before it, and repeat the news rather than add to it.
        if now >= state.paused_until:
            state.limit = max(1, state.limit // 2)
        delay = self.pause if retry_after is None else retry_after
        state.paused_until = max(state.paused_until, now + min(max(delay, 0.0), self.max_pause))

    def _sweep_if_due(self, now: float) -> None:
        """Forget idle hosts whose pause is over and that were last used ``forget_after`` ago.

        Run when the table has doubled since the last sweep, so its cost is
        amortized over the insertions (like a growing list).
        """
        if len(self._hosts) < self._sweep_at:
            return
        stale = [host for host, state in self._hosts.items()
                 if state.active == 0 and now >= state.paused_until
                 and (state.limit == self.per_host or now - state.seen >= self.forget_after)]
        for host in stale:
            del self._hosts[host]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self._hosts))


# --- the slot handed to the engines --------------------------------------------------


class HostSlot:
    """One connection slot of a host, held for the body of ``with politeness.host(key) as slot``.

    When the block ends, the slot is released with the outcome given to
    :meth:`outcome`, or else ``"ok"`` when the block ended normally and ``"error"``
    when it raised.
    """

    __slots__ = ("host", "_outcome", "_retry_after")

    def __init__(self, host: str) -> None:
        self.host = host
        self._outcome: Outcome | None = None
        self._retry_after: float | None = None

    def outcome(self, kind: Outcome, *, retry_after: float | None = None) -> None:
        """Say how the connection ended (the last call wins); ``retry_after`` in seconds, for ``"throttled"``."""
        _check_outcome(kind)
        self._outcome = kind
        self._retry_after = retry_after

    def _settle(self, raised: bool) -> tuple[Outcome, float | None]:
        """The outcome to release with, given whether the block raised."""
        if self._outcome is not None:
            return self._outcome, self._retry_after
        return ("error" if raised else "ok"), None


# --- the asyncio adapter -------------------------------------------------------------


class AsyncPoliteness:
    """Politeness for the asyncio engine: host slots and the rate budget, for tasks of one event loop.

    Args:
        per_host: the most connections to one host.
        rate: the run's bandwidth in bytes per second, or None for no limit.
        clock: the time source of the pure core; monotonic, in seconds.
        pause, max_pause, ceiling: as for :class:`HostPolicy`.
        burst: as for :class:`TokenBucket`.

    Use it from one event loop only: its waiters are that loop's futures.
    """

    def __init__(self, per_host: int, rate: float | None, *, clock: Callable[[], float] = time.monotonic,
                 pause: float = 5.0, max_pause: float = 300.0, burst: float | None = None,
                 ceiling: int | None = None) -> None:
        self.policy = HostPolicy(per_host, pause=pause, max_pause=max_pause, ceiling=ceiling)
        self.bucket = TokenBucket(rate, burst) if rate is not None else None
        self._clock = clock
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}  # hosts with waiters, first in line first
        self._timers: dict[str, asyncio.TimerHandle] = {}  # paused hosts with waiters: wake at the end

    @contextlib.asynccontextmanager
    async def host(self, host: str) -> AsyncIterator[HostSlot]:
        """Hold one connection slot of ``host`` (a :func:`host_key`) for the body of ``async with``."""
        await self._acquire(host)
        slot = HostSlot(host)
        raised = True
        try:
            yield slot
            raised = False
        finally:
            self._release(host, *slot._settle(raised))

    async def spend(self, n: int) -> None:
        """Take ``n`` bytes of the rate budget, sleeping this task only, as long as its share needs."""
        if self.bucket is None or n == 0:
            return
        delay = self.bucket.reserve(n, self._clock())
        if delay > 0:
            import asyncio

            await asyncio.sleep(delay)

    async def _acquire(self, host: str) -> None:
        import asyncio

        # Someone already waiting goes first: a newcomer only tries when nobody is queued.
        if host not in self._queues:
            wait = self.policy.try_acquire(host, self._clock())
            if wait is None:
                return
            self._watch(host, wait)
        waiter = asyncio.get_running_loop().create_future()
        self._queues.setdefault(host, deque()).append(waiter)
        try:
            await waiter  # resolved by _wake once the slot is ours
        except asyncio.CancelledError:
            self._abandon(host, waiter)
            raise

    def _abandon(self, host: str, waiter: asyncio.Future[None]) -> None:
        """A waiter was cancelled: leave the line, or give back the slot handed over just before."""
        if waiter.done() and not waiter.cancelled():
            self._release(host, "error", None)
            return
        waiter.cancel()
        queue = self._queues.get(host)
        if queue is not None:
            with contextlib.suppress(ValueError):  # _wake may have dropped it already
                queue.remove(waiter)
            if not queue:
                del self._queues[host]

    def _release(self, host: str, outcome: Outcome, retry_after: float | None) -> None:
        self.policy.release(host, outcome=outcome, now=self._clock(), retry_after=retry_after)
        self._wake(host)

    def _wake(self, host: str) -> None:
        """Hand the host's free slots to its waiters, in order; watch for the end of a pause."""
        queue = self._queues.get(host)
        while queue:
            if queue[0].done():  # cancelled, and its task has not yet left the line
                queue.popleft()
                continue
            wait = self.policy.try_acquire(host, self._clock())
            if wait is not None:
                self._watch(host, wait)
                return
            queue.popleft().set_result(None)
        self._queues.pop(host, None)

    def _watch(self, host: str, wait: float) -> None:
        """Call :meth:`_wake` when the host's pause ends; ``inf`` needs no timer (a release will)."""
        import asyncio

        if math.isinf(wait) or host in self._timers:
            return  # an earlier timer wakes up, finds the pause longer, and sets a new one
        self._timers[host] = asyncio.get_running_loop().call_later(wait, self._pause_over, host)

    def _pause_over(self, host: str) -> None:
        del self._timers[host]
        self._wake(host)


# --- the threads adapter -------------------------------------------------------------


class Stopped(Exception):
    """Raised by :class:`ThreadPoliteness` waits when ``stop`` is set (unless another type is given)."""


class _Ticket:
    """A thread's place in a host's line; ``granted`` once a slot was taken for it."""

    __slots__ = ("granted", "ready")

    def __init__(self, lock: threading.Lock) -> None:
        self.granted = False
        self.ready = threading.Condition(lock)  # one condition per waiter: a release wakes only it


class ThreadPoliteness:
    """Politeness for the threads engine: the same as :class:`AsyncPoliteness`, for worker threads.

    Args:
        per_host, rate, clock, pause, max_pause, burst, ceiling: as for :class:`AsyncPoliteness`.
        stop: when set, every wait here ends within :data:`STOP_POLL` seconds by raising
            ``interrupt()``.
        interrupt: the exception type raised on ``stop`` (the engine passes its own).

    The lock is held only to compute: threads sleep on their own condition or on
    ``stop.wait``, never while holding it.
    """

    def __init__(self, per_host: int, rate: float | None, *, stop: threading.Event | None = None,
                 interrupt: type[BaseException] = Stopped, clock: Callable[[], float] = time.monotonic,
                 pause: float = 5.0, max_pause: float = 300.0, burst: float | None = None,
                 ceiling: int | None = None) -> None:
        self.policy = HostPolicy(per_host, pause=pause, max_pause=max_pause, ceiling=ceiling)
        self.bucket = TokenBucket(rate, burst) if rate is not None else None
        self._stop = stop if stop is not None else threading.Event()
        self._interrupt = interrupt
        self._clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Ticket]] = {}  # hosts with waiters, first in line first

    @contextlib.contextmanager
    def host(self, host: str) -> Iterator[HostSlot]:
        """Hold one connection slot of ``host`` (a :func:`host_key`) for the body of ``with``."""
        self._acquire(host)
        slot = HostSlot(host)
        raised = True
        try:
            yield slot
            raised = False
        finally:
            self._release(host, *slot._settle(raised))

    def spend(self, n: int) -> None:
        """Take ``n`` bytes of the rate budget, sleeping this thread only, as long as its share needs."""
        if self.bucket is None or n == 0:
            return
        with self._lock:
            delay = self.bucket.reserve(n, self._clock())
        if delay > 0 and self._stop.wait(delay):
            raise self._interrupt()

    def _acquire(self, host: str) -> None:
        with self._lock:
            # Someone already waiting goes first: a newcomer only tries when nobody is queued.
            if host not in self._queues and self.policy.try_acquire(host, self._clock()) is None:
                return
            ticket = _Ticket(self._lock)
            self._queues.setdefault(host, deque()).append(ticket)
            try:
                self._wait_for(host, ticket)
            except BaseException:
                self._abandon(host, ticket)
                raise

    def _wait_for(self, host: str, ticket: _Ticket) -> None:
        """Sleep (lock released) until the ticket is granted.

        Only the first in line wakes up on its own, to watch a pause and ``stop``; the
        others sleep until they are granted a slot or become first (hundreds of workers
        polling cost a second of CPU per 5,000 small files). On ``stop`` the first
        leaves the line and wakes the next, which leaves in turn.
        """
        while not ticket.granted:
            if self._stop.is_set():
                raise self._interrupt()
            first = self._queues[host][0] is ticket
            wait = self._grant(host) if first else math.inf
            if not ticket.granted:
                ticket.ready.wait(min(wait, STOP_POLL) if first else None)

    def _abandon(self, host: str, ticket: _Ticket) -> None:
        """Leave the line (lock held), or give back the slot granted just before."""
        if ticket.granted:
            self.policy.release(host, outcome="error", now=self._clock())
            self._grant(host)
            return
        queue = self._queues[host]
        queue.remove(ticket)
        if not queue:
            del self._queues[host]
        else:
            queue[0].ready.notify()  # the new first in line takes over watching a pause

    def _release(self, host: str, outcome: Outcome, retry_after: float | None) -> None:
        with self._lock:
            self.policy.release(host, outcome=outcome, now=self._clock(), retry_after=retry_after)
            self._grant(host)

    def _grant(self, host: str) -> float:
        """Hand the host's free slots to its waiters, in order (lock held).

        Returns the seconds until the host's pause ends, or ``inf`` (wait for a release).
        """
        queue = self._queues.get(host)
        while queue:
            wait = self.policy.try_acquire(host, self._clock())
            if wait is not None:
                return wait
            ticket = queue.popleft()
            ticket.granted = True
            ticket.ready.notify()
            if queue:
                queue[0].ready.notify()  # the new first in line takes over watching
        self._queues.pop(host, None)
        return math.inf


def note_response(slot: HostSlot, status: int, headers: Mapping[str, str]) -> None:
    """Tell the host's slot about an answer: 429 and 503 slow the host down (until Retry-After)."""
    if status in THROTTLING_STATUSES:
        from downloader.core import parse_retry_after

        slot.outcome("throttled", retry_after=parse_retry_after(headers.get("Retry-After")))


class Settings(TypedDict):
    """What :class:`AsyncPoliteness` and :class:`ThreadPoliteness` are built with, from a run's Config."""

    per_host: int
    rate: float | None
    ceiling: int | None
    pause: float
    max_pause: float


def settings_for(config: Config) -> Settings:
    """The politeness of a run: ``--per-host`` (with borrowing under the default), ``--limit-rate``,
    and how long a host that answered 429/503 is left alone: its Retry-After up to ``--max-wait``,
    else twice the first retry's backoff (so the retry itself is not held back much longer)."""
    return {"per_host": config.host_limit, "rate": config.limit_rate, "ceiling": config.host_ceiling,
            "pause": 2 * config.backoff_base, "max_pause": config.max_wait}
