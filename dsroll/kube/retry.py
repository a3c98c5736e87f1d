"""The retry budget: how long the client rides out an API server that fails or does not answer.

A request that fails transiently (connection refused or reset, a timeout, which is what a
frozen server gives, 429, 500, 502, 503, 504) is tried again, with exponential backoff
(0.2 s, doubling, at most 5 s between tries), for as long as the *outage* has lasted less
than the budget. One outage is shared by every request of a client, whatever thread sends
it (the rollout loop, its watches, its pod deletes, its lease renewals): it begins when the
first request sent since the last answer fails, and any answer ends it. So the budget means
what an operator reads into it, "the API server may be away this long": it is neither per
request nor multiplied by the number of requests waiting.

A rollout runs with ``--retry-budget`` (default 2m, ``DSROLL_RETRY_BUDGET``); every other
request, and a rollout's preflight, with 5 s, so that an unreachable cluster is refused
(exit 2) at once. Pure: the clock is handed in, exceptions are only classified;
``client.py`` wires this to tenacity.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import urllib3
from kubernetes.client.exceptions import ApiException

from dsroll import durations
from dsroll.errors import InputError

#: Before anything is changed: an unreachable cluster is an error (exit 2), not a wait.
COMMAND_BUDGET = 5.0
#: A rollout, once it runs (``--retry-budget``, ``DSROLL_RETRY_BUDGET``).
RUN_BUDGET = 120.0
RUN_BUDGET_TEXT = "2m"
ENV_VAR = "DSROLL_RETRY_BUDGET"


#: Statuses that say "try again": too many requests, and the server or a proxy failing.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: The unreachable, the reset and the timed out, as urllib3 and the socket layer raise them.
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says "the server is away or overloaded" rather than "no".

    The kubernetes client turns a TLS failure into ``ApiException(status=0)``: a handshake
    cut short (a server going down) is transient, a certificate that does not verify is not.
    """
    if isinstance(exc, ApiException):
        if exc.status == 0:
            reason = str(exc.reason or "")
            return "SSLError" in reason and "CERTIFICATE_VERIFY_FAILED" not in reason
        return exc.status in TRANSIENT_STATUSES
    return isinstance(exc, NETWORK_ERRORS)


def short_reason(exc: BaseException) -> str:
    """A transient failure in a few words ("connection refused", "timed out", "503 Service
    Unavailable"), else as urllib3 says it."""
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}" if exc.status else "TLS connection cut short"
    text = str(exc).lower()
    for what in ("connection refused", "connection reset", "connection aborted", "remote end closed"):
        if what in text:
            return what
    # (urllib3's NewConnectionError, a refusal, is a ConnectTimeoutError: so tested after the words)
    if isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError) or "timed out" in text:
        return "timed out"
    return str(getattr(exc, "reason", None) or exc)


def seconds_text(seconds: float) -> str:
    """90 → "90s", 120 → "2m": a budget as the operator would write it."""
    return f"{seconds:g}s" if seconds < 120 or seconds % 60 else f"{seconds / 60:g}m"


def parse_retry_budget(text: str | None) -> float:
    """``--retry-budget``: a duration (90s, 2m) or seconds; 0 retries nothing."""
    if text is None:
        return RUN_BUDGET
    try:
        return durations.flag_seconds(text)
    except ValueError:
        raise InputError(f"--retry-budget ({ENV_VAR}) {text!r}: {durations.HINT}; 0 for no retries") from None


@dataclass(frozen=True)
class RetryBudget:
    """How long an outage may last before requests stop being retried, and the backoff."""

    seconds: float
    first_wait: float = 0.2
    max_wait: float = 5.0

    def wait(self, attempt: int, outage: float) -> float | None:
        """Seconds to wait before trying again after failed attempt number ``attempt``
        (from 1), the outage having lasted ``outage`` seconds; None: the budget is spent.

        The last wait is cut to what is left, so one more try lands at the budget's end."""
        left = self.seconds - outage
        if left <= 0:
            return None
        return min(self.max_wait, self.first_wait * 2 ** (attempt - 1), left)


class Outage:
    """Since when the API server has been failing, as seen by every thread of one client.

    Times are a monotonic clock's, handed in by the caller.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._answered_at = float("-inf")

    def failed(self, sent_at: float) -> bool:
        """A request sent at ``sent_at`` failed transiently; True when that began an outage.
        A request sent before the last answer (a slow one) starts it no earlier than that answer."""
        with self._lock:
            if self._since is not None:
                return False
            self._since = max(sent_at, self._answered_at)
            return True

    def answered(self, at: float) -> float | None:
        """The server answered (any HTTP status that is not transient): no outage. How long
        the outage it ended had lasted; None when there was none."""
        with self._lock:
            lasted = None if self._since is None else max(0.0, at - self._since)
            self._since = None
            self._answered_at = max(self._answered_at, at)
            return lasted

    def lasted(self, now: float) -> float:
        """How long the current outage has lasted at ``now``; 0 when there is none."""
        with self._lock:
            return 0.0 if self._since is None else max(0.0, now - self._since)
