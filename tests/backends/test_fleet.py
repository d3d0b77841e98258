"""Least-in-flight routing over a fleet, cool-down of failing endpoints and the single probe after it."""

from __future__ import annotations

from cotspec.backends.fleet import EndpointPool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_pool(clock: Clock, count: int = 2) -> EndpointPool:
    urls = [f"http://user:pw@10.0.0.{i}:8000/v1" for i in range(count)]
    return EndpointPool(urls, cooldown_s=30.0, failures_before_cooldown=3, clock=clock)


def test_requests_go_to_the_least_busy_endpoint_round_robin_on_ties():
    pool = make_pool(Clock(), count=3)
    first, second, third = pool.acquire(), pool.acquire(), pool.acquire()
    assert {first.label, second.label, third.label} == {"10.0.0.0:8000", "10.0.0.1:8000", "10.0.0.2:8000"}
    pool.release(second, ok=True)
    assert pool.acquire() is second  # the only one with nothing in flight


def test_labels_never_carry_credentials():
    pool = make_pool(Clock())
    assert all("pw" not in e.label and "user" not in e.label for e in pool.endpoints)


def test_refused_endpoint_is_skipped_during_cooldown_then_probed_once():
    clock = Clock()
    pool = make_pool(clock)
    dead, live = pool.endpoints
    pool._next = 0
    endpoint = pool.acquire()
    assert endpoint is dead
    pool.release(dead, ok=False, down=True)
    assert pool.has_live_alternative(dead)
    assert all(pool.acquire() is live for _ in range(4))  # dead is cooling down

    clock.now += 31  # cool-down over: exactly one probe goes to it
    probe = [pool.acquire() for _ in range(3)]
    assert probe.count(dead) == 1
    pool.release(dead, ok=True)
    assert dead.down_until == 0.0 and dead.consecutive_failures == 0


def test_repeated_failures_cool_an_endpoint_down():
    clock = Clock()
    pool = make_pool(clock)
    flaky = pool.endpoints[0]
    for _ in range(2):
        flaky.in_flight += 1
        pool.release(flaky, ok=False)
    assert flaky.down_until == 0.0  # two failures are not yet a pattern
    flaky.in_flight += 1
    pool.release(flaky, ok=False)
    assert flaky.down_until == clock.now + 30.0


def test_when_all_are_down_the_first_to_recover_is_tried():
    clock = Clock()
    pool = make_pool(clock)
    a, b = pool.endpoints
    for endpoint, delay in ((a, 0.0), (b, -10.0)):
        endpoint.in_flight += 1
        clock.now += delay
        pool.release(endpoint, ok=False, down=True)
    assert not pool.has_live_alternative(a)
    assert pool.acquire() is b
