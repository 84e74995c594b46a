"""Failed sign-ins, limited per account and per client address (in process, sliding window).

    limiter = LoginLimiter(LoginLimits(per_account=5, per_address=20, window=60.0))
    wait = limiter.attempt("ann", "10.0.0.7")  # > 0: refuse (429, Retry-After) without checking the password
    ...check the password...
    limiter.succeeded("ann", "10.0.0.7")       # right: the account's failures are forgotten

Each key keeps the times of its last `limit` failures; it is over the limit while `limit`
failures fall within the last `window` seconds, and may try again when the oldest of them
leaves the window (OWASP Authentication Cheat Sheet: throttle by account and by source, and
answer the same whether or not the account exists, so the 429 reveals no username). An
attempt counts as a failure from the moment it is let through, so a burst sent in parallel
cannot slip past the limit while the (slow, argon2) password checks run; a success takes its
own count back and clears the account's, but leaves the address's other failures, so one valid
account cannot reset the budget an address spends guessing at others. The clock is injected,
so tests advance time instead of sleeping. The counts live in this process (`label serve`
runs one) and are forgotten on restart.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class LoginLimits:
    per_account: int = 5  # failed sign-ins for one username within `window` before 429
    per_address: int = 20  # failed sign-ins from one client address within `window` before 429
    window: float = 60.0  # seconds a failure counts against its account and address

    def __post_init__(self) -> None:
        if self.per_account < 1 or self.per_address < 1 or not self.window > 0:
            raise ValueError(f"login limits need attempts >= 1 and a window > 0 seconds, got {self}")


class SlidingWindow:
    """At most `limit` events per key within any `window` seconds."""

    MAX_KEYS = 10_000  # above this, keys with no event left in the window are swept away

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._events: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it is under the limit now."""
        events = self._events.get(key)
        if events is None or len(events) < self.limit:
            return 0.0
        wait = events[0] + self.window - self.clock()  # the oldest of the last `limit` events
        return min(max(wait, 0.0), self.window)  # clamped: a clock set back never blocks for longer

    def hit(self, key: str) -> None:
        if len(self._events) >= self.MAX_KEYS:
            self._sweep()
        self._events.setdefault(key, deque(maxlen=self.limit)).append(self.clock())

    def clear(self, key: str) -> None:
        self._events.pop(key, None)

    def take_back(self, key: str) -> None:
        """Forget the latest event of `key` (an attempt that turned out well)."""
        events = self._events.get(key)
        if events:
            events.pop()

    def _sweep(self) -> None:
        cutoff = self.clock() - self.window
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= cutoff]:
            del self._events[key]


class LoginLimiter:
    """Failed sign-ins per account and per client address; see the module docstring."""

    def __init__(self, limits: LoginLimits = LoginLimits(), clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._accounts = SlidingWindow(limits.per_account, limits.window, clock)
        self._addresses = SlidingWindow(limits.per_address, limits.window, clock)

    def attempt(self, username: str, address: str | None) -> int:
        """Whole seconds to wait (for a Retry-After header) before `username` may be tried from
        `address`; 0: go ahead, and this attempt counts as a failure until `succeeded`."""
        address = address or ""
        with self._lock:
            wait = max(self._accounts.retry_after(username), self._addresses.retry_after(address))
            if wait <= 0:
                self._accounts.hit(username)
                self._addresses.hit(address)
        return math.ceil(wait)

    def succeeded(self, username: str, address: str | None) -> None:
        with self._lock:
            self._accounts.clear(username)
            self._addresses.take_back(address or "")
