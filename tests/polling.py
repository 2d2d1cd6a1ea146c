"""Waiting on real jobs in tests: poll, never sleep a fixed time (CI may be twice as slow as this machine)."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float, what: str):
    """`predicate()`'s first truthy value, polled every 0.5 s; fails the test after `timeout` s, saying what for."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
