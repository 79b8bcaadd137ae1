"""server/throttle.py, with an injected clock: the limit, the sliding window, recovery, and the
memory a flood of addresses can cost. Its callers' numbers are pinned in test_backend_api.py
and tests/cluster/test_membership.py."""

from __future__ import annotations

import tracemalloc

import pytest

from server.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(limit: int = 3, window: float = 10.0, max_addresses: int = 100) -> tuple[Throttle, Clock]:
    clock = Clock()
    return Throttle(limit, window, max_addresses, clock=clock), clock


def test_the_limit_th_failure_refuses_the_address_for_a_window_and_says_so_once() -> None:
    t, clock = throttle()
    assert [t.failed("a"), t.failed("a")] == [False, False] and t.retry_after("a") == 0
    assert t.failed("a") and t.retry_after("a") == 10.0
    assert t.retry_after("b") == 0  # another address is not held back
    clock.now += 4
    assert not t.failed("a")  # counted while refused, but the refusal was already reported
    assert t.retry_after("a") == 6.0


def test_the_window_slides_so_no_window_holds_more_than_the_limit() -> None:
    t, clock = throttle()
    for _ in range(2):
        t.failed("a")
    clock.now += 9.5
    assert t.retry_after("a") == 0 and t.failed("a")  # three within 10 s: refused
    assert t.retry_after("a") == 0.5  # until the oldest is 10 s old, not 10 s from now
    clock.now += 0.5
    assert t.retry_after("a") == 0  # the two oldest aged out together
    # One that fails once, waits until nearly the end of the window, then tries all the time
    # gets its limit per window and no more: a fixed window counted from a first failure would
    # let nearly twice that through across the window's end.
    t, clock = throttle()
    let_in = [clock.now]
    t.failed("a")
    clock.now += 9.75
    for _ in range(1000):
        if not t.retry_after("a"):
            let_in.append(clock.now)
            t.failed("a")
        clock.now += 0.25
    assert len(let_in) >= 3 * 24  # about 260 s: three every ten seconds
    assert all(later - earlier >= 10.0 for earlier, later in zip(let_in, let_in[3:], strict=False))


def test_a_refused_address_recovers_when_its_failures_age_out() -> None:
    t, clock = throttle()
    for _ in range(3):
        t.failed("a")
    clock.now += 9.999
    assert t.retry_after("a") > 0
    clock.now += 0.001
    assert t.retry_after("a") == 0  # a failure counts for exactly the window
    clock.now += 3600
    assert t.retry_after("a") == 0  # and a client that stops failing stays let in
    # all aged out: a whole new limit, not one try at a time
    assert [t.failed("a"), t.failed("a"), t.failed("a")] == [False, False, True]


def test_a_flood_of_100k_addresses_costs_bounded_memory_and_forgets_the_least_recent_first() -> None:
    t, clock = throttle(max_addresses=1000)
    for _ in range(3):
        t.failed("refused")
    for i in range(999):  # the table is full now, the refused address first
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert t.retry_after("refused") == 10.0
    t.failed("one more")
    assert t.retry_after("refused") == 0  # forgotten to make room: it gets its three again

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            t.failed(f"2001:db8::{i:x}")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 1000 addresses' worth (a few hundred bytes each), where 100k would be tens of MB
    assert held < 1000 * 1024, held
    # the throttle still works for whoever fails next
    for _ in range(3):
        t.failed("late")
    assert t.retry_after("late") == 10.0


def test_addresses_whose_failures_aged_out_make_room_before_any_that_count() -> None:
    t, clock = throttle(max_addresses=2)
    for _ in range(3):
        t.failed("refused")
    clock.now += 5
    t.failed("old")
    clock.now += 6  # refused's failures aged out, old's has not
    t.failed("new")
    assert t.retry_after("refused") == 0
    for _ in range(2):
        t.failed("old")
    assert t.retry_after("old") == 4.0  # until its first failure is 10 s old: it was kept


@pytest.mark.parametrize("limit, window, max_addresses", [(0, 1.0, 1), (1, 0.0, 1), (1, 1.0, 0)])
def test_nonsense_numbers_are_refused_with_their_values(limit: int, window: float, max_addresses: int) -> None:
    with pytest.raises(ValueError, match=f"limit={limit}, window={window}, max_addresses={max_addresses}"):
        Throttle(limit, window, max_addresses)
