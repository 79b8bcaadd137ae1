"""Which incoming connections may start a handshake on the distribution port.

A node accepts connections from anyone who can reach the port, before it knows who they are,
so what a stranger can hold is bounded here:

* at most ``max_handshakes`` handshakes in progress at once, so a flood of idle connections
  cannot use up the node (connections past it are dropped without a word);
* of those, at most ``max_per_address`` from one address: a node dials a peer once at a time
  (plus a control query or two), so more is a flood, which must not take the slots every
  other node needs; it is refused, and counted as a failure;
* an address whose handshakes fail too often is refused at once (server/throttle.py) until its
  failures age out of the window. Which failures count is the owner's call.
"""

from __future__ import annotations

import logging
from collections import Counter
from enum import Enum

from ..throttle import Throttle

log = logging.getLogger("gossipy.cluster.admission")

MAX_HANDSHAKES = 128
MAX_HANDSHAKES_PER_ADDRESS = 8
THROTTLE_LIMIT = 5
THROTTLE_WINDOW = 10.0
# Addresses whose failures are remembered at once; past this the least recently failed are
# forgotten first, so a flood from many addresses (IPv6 has plenty) costs bounded memory.
THROTTLE_ADDRESSES = 10_000


class Verdict(Enum):
    ADMIT = "admit"
    # Tell it it is not allowed, and close.
    REFUSE = "refuse"
    # Close at once, without a word (the node is saturated).
    DROP = "drop"


class Admission:
    """The handshakes in progress, per address, and the throttle (see the module docstring)."""

    def __init__(self) -> None:
        self.throttle = Throttle(THROTTLE_LIMIT, THROTTLE_WINDOW, THROTTLE_ADDRESSES)
        self._from: Counter[str] = Counter()
        self._saturated = False

    @property
    def in_progress(self) -> int:
        return sum(self._from.values())

    def admit(self, host: str, address: str) -> Verdict:
        """Whether a connection from ``address`` (``host``:port) may start a handshake; an
        admitted one counts as in progress until :meth:`finished`."""
        if self.blocked(host):
            return Verdict.REFUSE
        if self.in_progress >= MAX_HANDSHAKES:
            # One line per flood, not one per connection of it.
            log.log(logging.DEBUG if self._saturated else logging.WARNING,
                    "refused connection from %s: %d handshakes already in progress", address, MAX_HANDSHAKES)
            self._saturated = True
            return Verdict.DROP
        self._saturated = False
        if self._from[host] >= MAX_HANDSHAKES_PER_ADDRESS:
            # Counted as a failure, so a flood is throttled (and logged) as a whole.
            log.debug("refused connection from %s: %d handshakes from it already in progress",
                      address, MAX_HANDSHAKES_PER_ADDRESS)
            self.failed(host)
            return Verdict.REFUSE
        self._from[host] += 1
        return Verdict.ADMIT

    def finished(self, host: str) -> None:
        """An admitted handshake ended, however it ended."""
        self._from[host] -= 1
        if not self._from[host]:
            del self._from[host]

    def blocked(self, host: str) -> bool:
        return self.throttle.retry_after(host) > 0

    def failed(self, host: str) -> None:
        """A handshake from ``host`` failed in a way that counts against it."""
        if self.throttle.failed(host):
            log.warning("throttling %s: %d failed handshakes within %g s; refusing its connections until "
                        "they age out", host, self.throttle.limit, self.throttle.window)
