"""Retry-After parsing and which failures are worth a retry."""

from __future__ import annotations

import email.utils

from cotspec.backends.retry import is_retryable_status, parse_retry_after

NOW = 1_700_000_000.0


def test_retry_after_in_seconds():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0


def test_retry_after_as_http_date():
    in_five = email.utils.formatdate(NOW + 5, usegmt=True)  # "Tue, 14 Nov 2023 22:13:25 GMT"
    assert parse_retry_after(in_five, now=NOW) == 5.0
    passed = email.utils.formatdate(NOW - 60, usegmt=True)
    assert parse_retry_after(passed, now=NOW) == 0.0


def test_retry_after_absent_or_unreadable():
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:25") is None  # no zone: not an HTTP date


def test_retryable_statuses():
    assert all(is_retryable_status(s) for s in (408, 409, 425, 429, 500, 502, 503, 504))
    assert not any(is_retryable_status(s) for s in (200, 400, 401, 403, 404, 422))
