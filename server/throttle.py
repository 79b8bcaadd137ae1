"""Failures per address, for refusing an address that fails too often (wrong API keys, failed
handshakes). Imports nothing of gossipy: each caller picks its numbers and logs in its words.

The window slides: an address is refused while ``limit`` of its failures are less than
``window`` seconds old, so no span of ``window`` seconds ever holds more than ``limit``
failures (a fixed window counted from a first failure would let nearly twice as many through
across a window's end), and it is refused for exactly as long as that stays true.

Memory is bounded twice: an address keeps at most its ``limit`` latest failures, and at most
``max_addresses`` addresses are kept; past that the one whose latest failure is oldest is
forgotten first (and only ever gets ``limit`` tries again), so a flood of addresses costs a
fixed amount of memory and constant time per failure.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class Throttle:
    """Counts failures per address in a sliding window; see the module docstring."""

    def __init__(self, limit: int, window: float, max_addresses: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0 or max_addresses < 1:
            raise ValueError(f"a throttle needs limit >= 1, window > 0 and max_addresses >= 1, got "
                             f"limit={limit}, window={window}, max_addresses={max_addresses}")
        self.limit = limit
        self.window = window
        self._max_addresses = max_addresses
        self._clock = clock
        # address -> its latest failures (at most limit of them), oldest first; the addresses in
        # the order of their latest failure, oldest first, so the ones to forget come first. An
        # OrderedDict, as a plain dict finds its first item past every one deleted before it.
        self._failures: OrderedDict[str, tuple[float, ...]] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may be let in again; 0 if it may now."""
        return self._left(self._failures.get(address, ()), self._clock())

    def failed(self, address: str) -> bool:
        """Records a failure; True if this one starts the address's refusal (so the caller
        logs it once, not once per refused try)."""
        now = self._clock()
        # Popped and put back, so the table stays in order of latest failure.
        earlier = self._failures.pop(address, ())
        self._forget_old(now)
        kept = earlier[max(len(earlier) - self.limit + 1, 0):]  # with now, the latest limit
        failures = (*(t for t in kept if t + self.window > now), now)
        self._failures[address] = failures
        return not self._left(earlier, now) and self._left(failures, now) > 0

    def _left(self, failures: tuple[float, ...], now: float) -> float:
        """How long ``failures`` (an address's latest, oldest first) keep it refused."""
        if len(failures) < self.limit:
            return 0.0
        return max(failures[-self.limit] + self.window - now, 0.0)

    def _forget_old(self, now: float) -> None:
        """Makes room for one address: drops those whose failures have all aged out, and the
        oldest while the table is full (both come first in its order)."""
        while self._failures:
            latest = next(iter(self._failures.values()))[-1]
            if len(self._failures) < self._max_addresses and latest + self.window > now:
                return
            self._failures.popitem(last=False)
