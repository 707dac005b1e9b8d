"""What an LLM provider says about its rate limits, parsed from a response's headers.

One parser for every limiter (in-memory, Redis, groups). It reads

- OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; resets are durations such as
  ``"6m0s"``, ``"1.5s"``, ``"120ms"``, ``"1h2m3.5s"`` (a bare number is seconds);
- Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,
  reset}``; resets are RFC 3339 times (``"2026-01-01T12:00:00Z"``);
- ``retry-after-ms`` (milliseconds) or else ``retry-after`` (seconds, or an HTTP date), which hold
  every caller: read on a 429 (or a 503), or whenever present when no status is given.

Header names are matched without regard to case. Every time becomes "seconds from now". A value
that cannot be read is not raised: it is left out of the report and described in
``report.problems``; :func:`report_problems` warns once per distinct problem
(:class:`RateLimitHeaderWarning`).
"""

from __future__ import annotations

import email.utils
import math
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "RESOURCES",
    "ProviderLimit",
    "ProviderReport",
    "RateLimitHeaderWarning",
    "parse_rate_limit_headers",
    "report_problems",
    "check_resource",
    "read_observation",
    "budget_of",
]

RESOURCES = ("requests", "tokens", "input-tokens", "output-tokens")
_OPENAI_RESOURCES = ("requests", "tokens")
_HOLD_STATUSES = (429, 503)


class RateLimitHeaderWarning(RuntimeWarning):
    """A provider's rate-limit header could not be used (it changed nothing)."""


@dataclass(frozen=True)
class ProviderLimit:
    """One resource's limit as the provider reported it (None where a header was absent)."""

    limit: float | None
    remaining: float | None
    reset_after: float | None  # seconds from now until the provider's budget resets


@dataclass(frozen=True)
class ProviderReport:
    """What ``observe(headers)`` (and :func:`parse_rate_limit_headers`) read from a response:
    each resource's :class:`ProviderLimit` by name ("requests", "tokens", ...), the time to hold
    every caller, and a description of each header that could not be used."""

    limits: dict[str, ProviderLimit] = field(default_factory=dict)
    retry_after: float | None = None  # seconds from now: hold every caller until then
    problems: tuple[str, ...] = ()


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0.0 else None


def _duration(text: str) -> float | None:
    """Seconds in a Go-style duration ("6m0s", "1.5s", "120ms") or a bare number of seconds."""
    text = text.strip()
    bare = _number(text)
    if bare is not None:
        return bare
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 and math.isfinite(total) else None


def _rfc3339_after(text: str, wall_now: float) -> float | None:
    """Seconds from ``wall_now`` (time.time()) until an RFC 3339 time, 0.0 if it has passed."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"  # fromisoformat reads "Z" only from Python 3.11 on
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - wall_now)


def _retry_after(h: dict[str, str], wall_now: float, problems: list[str]) -> float | None:
    if "retry-after-ms" in h:
        ms = _number(h["retry-after-ms"])
        if ms is not None:
            return ms / 1000.0
        problems.append(f"retry-after-ms: not a number of milliseconds: {h['retry-after-ms']!r}")
    if "retry-after" in h:
        text = h["retry-after"].strip()
        seconds = _number(text)
        if seconds is not None:
            return seconds
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, when.timestamp() - wall_now)
        problems.append(f"retry-after: neither seconds nor an HTTP date: {text!r}")
    return None


def _resource(h, names, reset_of, problems) -> ProviderLimit | None:
    """The limit of one resource from its (limit, remaining, reset) header names."""
    present = [n for n in names if n in h]
    if not present:
        return None
    values: list[float | None] = []
    for n, read in zip(names, (_number, _number, reset_of), strict=True):
        v = read(h[n]) if n in h else None
        if n in h and v is None:
            problems.append(f"{n}: cannot read {h[n]!r}")
        values.append(v)
    limit, remaining, reset = values
    if remaining is not None and reset is None:
        problems.append(f"{names[1]} without a readable {names[2]}: ignored (until when?)")
        remaining = None
    return ProviderLimit(limit, remaining, reset)


def parse_rate_limit_headers(headers, *, status=None, wall_now=None) -> ProviderReport:
    """Read a response's rate-limit headers (a mapping of names to values, any case).

    ``status`` is the response's HTTP status: retry-after is read on 429/503 only, or whenever
    present when ``status`` is None. ``wall_now`` is the time.time() the RFC 3339 and HTTP-date
    resets are measured from (now by default).
    """
    if not isinstance(headers, Mapping) and not hasattr(headers, "items"):
        raise TypeError(f"headers must be a mapping of names to values, not {type(headers).__name__}")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise TypeError(f"status must be an int HTTP status or None, not {type(status).__name__}")
    now = time.time() if wall_now is None else float(wall_now)
    problems: list[str] = []
    h: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(name, str) and isinstance(value, str):
            h[name.lower()] = value
    limits: dict[str, ProviderLimit] = {}
    for res in RESOURCES:
        found = None
        if res in _OPENAI_RESOURCES:
            names = tuple(f"x-ratelimit-{part}-{res}" for part in ("limit", "remaining", "reset"))
            found = _resource(h, names, _duration, problems)
        if found is None:
            names = tuple(f"anthropic-ratelimit-{res}-{p}" for p in ("limit", "remaining", "reset"))
            found = _resource(h, names, lambda t: _rfc3339_after(t, now), problems)
        if found is not None:
            limits[res] = found
    retry = None
    if status is None or status in _HOLD_STATUSES:
        retry = _retry_after(h, now, problems)
    return ProviderReport(limits, retry, tuple(problems))


_reported: set[str] = set()


def report_problems(report: ProviderReport) -> None:
    """Warn (RateLimitHeaderWarning) about each problem not reported before in this process."""
    for problem in report.problems:
        kind = problem.split(":", 1)[0]
        if kind not in _reported:
            _reported.add(kind)
            warnings.warn(
                f"rate-limit header ignored, {problem}", RateLimitHeaderWarning, stacklevel=3
            )


def check_resource(resource, name: str = "resource") -> str:
    if not isinstance(resource, str):
        raise TypeError(f"{name} must be one of {RESOURCES}, not {type(resource).__name__}")
    if resource not in RESOURCES:
        raise ValueError(f"{name} must be one of {RESOURCES}, got {resource!r}")
    return resource


def budget_of(report: ProviderReport, resource: str):
    """``(remaining, reset_after)`` the provider reported for ``resource``, or None."""
    limit = report.limits.get(resource)
    if limit is None or limit.remaining is None or limit.reset_after is None:
        return None
    return (limit.remaining, limit.reset_after)


def read_observation(headers, resources, status):
    """Parse ``headers`` for limiters following ``resources`` (None entries follow none) and
    report the problems once. Returns ``(report, budgets, retry_after)``, one budget
    (``(remaining, reset_after)`` or None) per resource."""
    report = parse_rate_limit_headers(headers, status=status)
    budgets = [None if r is None else budget_of(report, r) for r in resources]
    problems = list(report.problems)
    if report.retry_after is None and not problems:
        for r, b in zip(resources, budgets, strict=True):
            if r is not None and b is None:
                problems.append(f"no {r}: no rate-limit headers for {r!r} in the response")
    report_problems(ProviderReport(report.limits, report.retry_after, tuple(problems)))
    return report, budgets, report.retry_after
