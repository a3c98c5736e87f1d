"""The retry budget: pure backoff and outage arithmetic, then the client against local sockets.

The client tests need no cluster: a port nobody listens on is an API server that is down
(connection refused), a socket that accepts and never answers is a frozen one (what a
SIGSTOPped kube-apiserver does), and a small HTTP server plays 503s and 429s. Each test
asserts what an operator would see: how long the client kept trying, and what it said.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from dsroll.errors import ApiUnavailable, ClusterError, InputError
from dsroll.kube import Kube, KubeOptions
from dsroll.kube.retry import (
    COMMAND_BUDGET,
    RUN_BUDGET,
    Outage,
    RetryBudget,
    is_transient,
    parse_retry_budget,
    seconds_text,
    short_reason,
)

# --- pure: backoff, the outage clock, the flag ---------------------------------------------


def test_backoff_doubles_from_200ms_up_to_5s() -> None:
    budget = RetryBudget(120)
    assert [budget.wait(n, 0) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_the_last_wait_is_cut_to_what_is_left_and_then_the_budget_is_spent() -> None:
    budget = RetryBudget(10)
    assert budget.wait(6, 8.5) == 1.5
    assert budget.wait(1, 10) is None
    assert budget.wait(1, 11) is None


def test_a_zero_budget_retries_nothing() -> None:
    assert RetryBudget(0).wait(1, 0) is None


def test_an_outage_lasts_from_the_first_failed_request_until_an_answer() -> None:
    outage = Outage()
    assert outage.lasted(100) == 0
    assert outage.failed(sent_at=10) is True, "this failure began an outage"
    assert outage.failed(sent_at=12) is False, "the same outage: it began at 10"
    assert outage.lasted(15) == 5
    assert outage.answered(16) == 6, "the answer ends an outage of 6 s"
    assert outage.lasted(30) == 0
    assert outage.answered(31) is None, "no outage to end"


def test_a_request_sent_before_the_last_answer_starts_the_outage_no_earlier_than_that_answer() -> None:
    outage = Outage()
    outage.answered(20)
    outage.failed(sent_at=5)  # slow, sent long ago, failed now: the server answered at 20
    assert outage.lasted(25) == 5


@pytest.mark.parametrize(("text", "seconds"), [(None, RUN_BUDGET), ("90s", 90), ("2m", 120), ("45", 45), ("0", 0)])
def test_retry_budget_flag(text: str | None, seconds: float) -> None:
    assert parse_retry_budget(text) == seconds


def test_a_bad_retry_budget_names_the_flag() -> None:
    with pytest.raises(InputError, match=r"--retry-budget \(DSROLL_RETRY_BUDGET\) 'soon': use a duration"):
        parse_retry_budget("soon")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ApiException(status=503), True),
        (ApiException(status=429), True),
        (ApiException(status=500), True),
        (ApiException(status=404), False),
        (ApiException(status=409), False),
        (ApiException(status=403), False),
        (ApiException(status=0, reason="SSLError\n[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred"), True),
        (ApiException(status=0, reason="SSLError\n[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), False),
        (urllib3.exceptions.ProtocolError("Connection aborted."), True),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."), True),  # type: ignore[arg-type]
        (ConnectionRefusedError(), True),
        (ValueError("a bug"), False),
    ],
)
def test_what_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_failures_and_budgets_in_a_few_words() -> None:
    assert short_reason(ApiException(status=503, reason="Service Unavailable")) == "503 Service Unavailable"
    assert short_reason(urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())) == (
        "connection aborted"
    )
    assert [seconds_text(s) for s in (3, 90, 120, 150, 600)] == ["3s", "90s", "2m", "150s", "10m"]


# --- the client against local sockets ------------------------------------------------------


def kube_for(tmp_path: Path, server: str, request_timeout: str | None = None) -> Kube:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return Kube(KubeOptions(kubeconfig=str(kubeconfig), request_timeout=request_timeout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def frozen() -> Iterator[str]:
    """A server that accepts connections and never answers, like a SIGSTOPped kube-apiserver."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


class Scripted:
    """An HTTP server answering each request with the next (status, body) of ``script``, then 200s."""

    def __init__(self, script: list[int]) -> None:
        self.script = list(script)
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.seen.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status = outer.script.pop(0) if outer.script else 200
                body = json.dumps({"kind": "Status", "message": f"scripted {status}"} if status >= 300 else {"ok": 1})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_PATCH = do_DELETE = do_PUT = do_POST = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[int]], Scripted]]:
    made: list[Scripted] = []

    def make(script: list[int]) -> Scripted:
        made.append(Scripted(script))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_a_server_that_is_down_is_retried_for_the_budget_then_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    kube = kube_for(tmp_path, url)
    told: list[str] = []
    kube.on_outage = lambda _, message: told.append(message)
    started = time.monotonic()
    with kube.retry_budget(2), pytest.raises(ApiUnavailable) as caught:
        kube.request("GET", "/api/v1/nodes")
    took = time.monotonic() - started
    assert 2 <= took < 4, took
    assert kube.requests >= 4, "retried with backoff: 0.2, 0.4, 0.8 s, then what was left"
    assert str(caught.value) == f"cannot reach {url}: connection refused (failing for 2s, the retry budget)"
    assert told == [f"the API server {url} is not answering (connection refused): retrying for up to 2s"]


def test_outside_a_run_the_budget_is_the_commands_and_a_spent_one_is_exit_2(tmp_path: Path) -> None:
    kube = kube_for(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert kube.budget == RetryBudget(COMMAND_BUDGET)
    with kube.retry_budget(0.5):
        assert kube.budget == RetryBudget(0.5)
    assert kube.budget == RetryBudget(COMMAND_BUDGET), "the run's budget ends with the run"
    with kube.retry_budget(0.5), pytest.raises(ApiUnavailable) as caught:
        kube.request("GET", "/api/v1/nodes")
    assert caught.value.exit_code == 2, "before anything is applied: an error, nothing changed"


def test_a_frozen_server_is_noticed_by_the_request_timeout(tmp_path: Path, frozen: str) -> None:
    kube = kube_for(tmp_path, frozen, request_timeout="300ms")
    started = time.monotonic()
    told: list[str] = []
    kube.on_outage = lambda _, message: told.append(message)
    with kube.retry_budget(1), pytest.raises(ApiUnavailable) as caught:
        kube.request("GET", "/api/v1/nodes")
    assert str(caught.value) == f"cannot reach {frozen}: timed out (failing for 1s, the retry budget)"
    assert time.monotonic() - started < 3
    assert told == [f"the API server {frozen} is not answering (timed out): retrying for up to 1s"]


def test_without_a_request_timeout_a_run_still_waits_no_longer_than_its_budget(tmp_path: Path, frozen: str) -> None:
    kube = kube_for(tmp_path, frozen, request_timeout="0")
    assert kube.timeout is None
    started = time.monotonic()
    with kube.retry_budget(1), pytest.raises(ApiUnavailable):
        kube.request("GET", "/api/v1/nodes")
    assert time.monotonic() - started < 4


def test_a_watch_on_a_server_that_is_down_ends_in_the_same_error(tmp_path: Path) -> None:
    kube = kube_for(tmp_path, f"http://127.0.0.1:{free_port()}")
    with kube.retry_budget(1), pytest.raises(ApiUnavailable):
        next(kube.watch("/api/v1/pods", resource_version="1", timeout=5))


def test_503_and_429_are_retried_until_the_server_answers_and_the_operator_is_told(
    tmp_path: Path, scripted: Callable[[list[int]], Scripted]
) -> None:
    server = scripted([503, 429, 503])
    kube = kube_for(tmp_path, server.url)
    told: list[tuple[str, str]] = []
    kube.on_outage = lambda event, message: told.append((event, message))
    with kube.retry_budget(30):
        assert kube.request("GET", "/api/v1/nodes") == {"ok": 1}
    assert server.seen == ["GET /api/v1/nodes"] * 4
    assert kube.outage.lasted(time.monotonic()) == 0, "an answer ends the outage"
    assert [event for event, _ in told] == ["api-unavailable", "api-available"], "once as it begins, once as it ends"
    assert told[0][1] == (
        f"the API server {server.url} is not answering (503 Service Unavailable): retrying for up to 30s"
    )
    assert told[1][1].startswith(f"the API server {server.url} answers again after ")


def test_a_refusal_is_not_retried(tmp_path: Path, scripted: Callable[[list[int]], Scripted]) -> None:
    server = scripted([404, 409])
    kube = kube_for(tmp_path, server.url)
    with kube.retry_budget(30):
        assert kube.request("GET", "/api/v1/namespaces/x", allow_missing=True) is None
        with pytest.raises(ClusterError) as caught:
            kube.request("DELETE", "/api/v1/namespaces/x/pods/p")
    assert caught.value.status == 409 and not isinstance(caught.value, ApiUnavailable)
    assert len(server.seen) == 2


def test_the_budget_is_one_outage_shared_by_every_request(
    tmp_path: Path, scripted: Callable[[list[int]], Scripted]
) -> None:
    """A second request in an outage that already spent the budget is not given a budget of its own."""
    url = f"http://127.0.0.1:{free_port()}"
    kube = kube_for(tmp_path, url)
    with kube.retry_budget(1):
        with pytest.raises(ApiUnavailable):
            kube.request("GET", "/api/v1/nodes")
        before, started = kube.requests, time.monotonic()
        with pytest.raises(ApiUnavailable):
            kube.request("GET", "/api/v1/pods")
        assert kube.requests == before + 1 and time.monotonic() - started < 0.5


def test_write_guards_run_before_every_attempt_of_a_write_and_can_stop_it(
    tmp_path: Path, scripted: Callable[[list[int]], Scripted]
) -> None:
    server = scripted([503])
    kube = kube_for(tmp_path, server.url)
    checks: list[str] = []
    remove = kube.guard_writes(lambda: checks.append("check"))
    with kube.retry_budget(30):
        kube.request("GET", "/api/v1/pods")
        kube.request("GET", "/api/v1/pods")  # the 503 was the first GET's: reads are not guarded
        assert checks == []
        kube.patch("/apis/apps/v1/namespaces/a/daemonsets/d", {"metadata": {}})
        assert checks == ["check"]
        kube.request("PUT", "/apis/coordination.k8s.io/v1/namespaces/a/leases/l", body={})  # the lock itself
        assert checks == ["check"]

        def refuse() -> None:
            raise ClusterError("lost the lock")

        remove()
        kube.guard_writes(refuse)
        sent = len(server.seen)
        with pytest.raises(ClusterError, match="lost the lock"):
            kube.request("DELETE", "/api/v1/namespaces/a/pods/p")
        assert len(server.seen) == sent, "a write the guard stops is never sent"
