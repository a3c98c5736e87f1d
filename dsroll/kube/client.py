"""The one client: configuration, timeouts, retries, request counting, watches, errors.

Every request goes through ``Kube.request`` (or ``Kube.watch``) and returns the API's own
JSON (camelCase, as in manifests), so diffs compare like with like. Transient failures
(connection refused or reset, timeouts, 429, 5xx) are retried with backoff within the
retry budget (``retry.py``: 5 s, or a rollout's ``--retry-budget`` while it runs), then
end as ``ApiUnavailable``; everything else becomes a one-line ``ClusterError`` naming the
server, or the verb and resource refused. Every request has a timeout (``--request-timeout``,
default 30 s; a watch, its own length plus 30 s), so a frozen API server is noticed.
Write guards (``guard_writes``) run before every attempt of a request that changes the
cluster: the rollout's lock proves it is still held there. The typed resource methods
(``kube.daemonsets.get(...)``) are in ``resources.py``; nothing outside this package
spells a REST path.
"""

from __future__ import annotations

import json
import os
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from tenacity import RetryCallState, Retrying, retry_if_exception

from dsroll import durations, version
from dsroll.errors import ApiUnavailable, ClusterError, InputError
from dsroll.kube import resources
from dsroll.kube.protocols import WatchExpired
from dsroll.kube.resources import FIELD_MANAGER
from dsroll.kube.retry import (
    COMMAND_BUDGET,
    NETWORK_ERRORS,
    Outage,
    RetryBudget,
    is_transient,
    seconds_text,
    short_reason,
)


def parse_request_timeout(text: str | None) -> float | None:
    """kubectl's --request-timeout: "0" means none; a bare number is seconds."""
    if text is None:
        return 30.0
    try:
        seconds = durations.flag_seconds(text)
    except ValueError:
        raise InputError(f"--request-timeout {text!r}: {durations.HINT}; 0 for no timeout") from None
    return seconds or None


@dataclass(frozen=True)
class KubeOptions:
    """kubectl's connection flags, as the user gave them."""

    kubeconfig: str | None = None
    context: str | None = None
    as_user: str | None = None
    as_group: str | None = None
    request_timeout: str | None = None


def user_agent() -> str:
    """``dsroll/<version> (<os>/<arch>) python/<version>``, kubectl's shape: an API server's
    audit log and request metrics then tell which dsroll release made a request."""
    system = f"{platform.system().lower()}/{platform.machine()}"
    return f"dsroll/{version()} ({system}) python/{platform.python_version()}"


def _status_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


#: Requests that change nothing a rollout is about: the lock, Events, "who am I".
_BOOKKEEPING = re.compile(r"^/apis/coordination\.k8s\.io/|/events$|/selfsubject\w+$")


def _changes_cluster(method: str, path: str, query: list[tuple[str, str]]) -> bool:
    """Whether a request that succeeded changed the workloads or their recorded state."""
    if method in ("GET", "HEAD") or ("dryRun", "All") in query:
        return False
    return not _BOOKKEEPING.search(path)


class Kube:
    """A connected client. ``requests`` counts HTTP requests made, for benchmarks;
    ``writes`` counts those that succeeded and changed the cluster, so that a run that
    fails can tell "nothing was applied" (exit 2) from "interrupted half-way" (exit 5)."""

    def __init__(self, options: KubeOptions, default_context: str | None = None) -> None:
        self.timeout = parse_request_timeout(options.request_timeout)
        cfg = client.Configuration()
        kubeconfig = options.kubeconfig or os.environ.get("KUBECONFIG")
        context = options.context or default_context
        in_cluster = (
            not kubeconfig
            and not os.path.exists(os.path.expanduser("~/.kube/config"))
            and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        )
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=cfg)
                self.context = "in-cluster"
            else:
                self.context = self._load_kubeconfig(cfg, kubeconfig, context)
        except ConfigException as exc:
            raise ClusterError(f"kubeconfig: {exc}") from None
        cfg.retries = False  # tenacity retries, with backoff, in one place
        self.server = cfg.host
        self.api = client.ApiClient(cfg)
        if options.as_user:
            self.api.set_default_header("Impersonate-User", options.as_user)
        if options.as_group:
            self.api.set_default_header("Impersonate-Group", options.as_group)
        self.api.user_agent = user_agent()
        self.requests = 0
        self.writes = 0
        #: The resourceVersion of each collection's last complete list (path, query): ``Collection.seen``.
        self.listed: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._counting = threading.Lock()  # deletes of a batch run concurrently
        self.budget = RetryBudget(COMMAND_BUDGET)
        self.outage = Outage()
        self._timeout_cap: float | None = None  # a run's budget bounds a request that has no timeout
        self._guards: list[Callable[[], None]] = []
        #: Told (event, message) when an outage begins ("api-unavailable") and ends ("api-available").
        self.on_outage: Callable[[str, str], None] | None = None
        # Transient failures are retried here only, within the budget of the outage they belong to.
        self._retrying = Retrying(
            retry=retry_if_exception(is_transient), stop=self._budget_spent, wait=self._backoff, reraise=True
        )
        self.daemonsets = resources.DaemonSets(self)
        self.pods = resources.Pods(self)
        self.revisions = resources.ControllerRevisions(self)
        self.leases = resources.Leases(self)
        self.configmaps = resources.ConfigMaps(self)
        self.events = resources.Events(self)
        self.nodes = resources.Nodes(self)
        self.namespaces = resources.Namespaces(self)
        self.access = resources.SelfSubjectAccessReviews(self)
        self.access_rules = resources.SelfSubjectRulesReviews(self)

    @staticmethod
    def _load_kubeconfig(cfg: client.Configuration, path: str | None, context: str | None) -> str:
        files = [os.path.expanduser(p) for p in (path or "~/.kube/config").split(os.pathsep) if p]
        if not any(os.path.exists(f) for f in files):
            raise ClusterError(f"no kubeconfig at {path or '~/.kube/config'} (use --kubeconfig or KUBECONFIG)")
        contexts, active = config.list_kube_config_contexts(config_file=path)
        names = [c["name"] for c in contexts or []]
        if context and context not in names:
            raise ClusterError(f"context {context!r} not found in kubeconfig (has: {', '.join(names) or 'none'})")
        config.load_kube_config(config_file=path, context=context, client_configuration=cfg)
        return context or (active or {}).get("name", "?")

    def describe(self) -> str:
        return f"context {self.context}, server {self.server}"

    # --- the retry budget and the write guards -----------------------------------------

    @contextmanager
    def retry_budget(self, seconds: float) -> Iterator[None]:
        """Inside: transient failures are retried for an outage of up to ``seconds``, and a
        request without a timeout (``--request-timeout 0``) waits at most that long."""
        saved = self.budget, self._timeout_cap
        self.budget, self._timeout_cap = RetryBudget(seconds), max(1.0, seconds)
        try:
            yield
        finally:
            self.budget, self._timeout_cap = saved

    def _retry(self, attempt: Callable[[], Any]) -> Any:
        """``attempt`` until it succeeds, fails for good, or the outage outlasts the budget.
        A copy per call: tenacity keeps its state per thread, and a write guard's lease
        renewal is a request inside a request."""
        return self._retrying.copy()(attempt)

    def _budget_spent(self, state: RetryCallState) -> bool:
        return self.budget.wait(state.attempt_number, self.outage.lasted(time.monotonic())) is None

    def _backoff(self, state: RetryCallState) -> float:
        return self.budget.wait(state.attempt_number, self.outage.lasted(time.monotonic())) or 0.0

    def _attempt(self, send: Callable[[], Any]) -> Any:
        """One try, recorded in the outage: a transient failure extends it, an answer ends it."""
        sent = time.monotonic()
        try:
            result = send()
        except BaseException as exc:
            if is_transient(exc):
                if self.outage.failed(sent) and self.on_outage is not None:
                    why, budget = short_reason(exc), seconds_text(self.budget.seconds)
                    message = f"the API server {self.server} is not answering ({why}): retrying for up to {budget}"
                    self.on_outage("api-unavailable", message)
            elif isinstance(exc, ApiException):
                self._answered()
            raise
        self._answered()
        return result

    def _answered(self) -> None:
        lasted = self.outage.answered(time.monotonic())
        if lasted is not None and self.on_outage is not None:
            self.on_outage("api-available", f"the API server {self.server} answers again after {lasted:.1f}s")

    def guard_writes(self, check: Callable[[], None]) -> Callable[[], None]:
        """Run ``check`` before every attempt of a request that changes the workloads or
        their state (it raises to stop the request); returns the function that removes it."""
        with self._counting:
            self._guards.append(check)

        def remove() -> None:
            with self._counting:
                if check in self._guards:
                    self._guards.remove(check)

        return remove

    def _request_timeout(self) -> float | None:
        return self.timeout or self._timeout_cap

    # --- requests ------------------------------------------------------------------------

    def _send(self, method: str, path: str, query: list[tuple[str, str]], body: Any, content_type: str | None) -> Any:
        writes = _changes_cluster(method, path, query)

        def once() -> Any:
            if writes:
                with self._counting:
                    guards = list(self._guards)
                for check in guards:
                    check()
            return self._attempt(lambda: self._send_once(method, path, query, body, content_type, writes))

        return self._retry(once)

    def _send_once(
        self, method: str, path: str, query: list[tuple[str, str]], body: Any, content_type: str | None, writes: bool
    ) -> Any:
        with self._counting:
            self.requests += 1
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = self.api.param_serialize(
            method, path, query_params=query, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(*params, _request_timeout=self._request_timeout())
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        if writes:
            with self._counting:
                self.writes += 1
        return json.loads(response.data) if response.data else None

    def watch(
        self, path: str, *, resource_version: str, query: Mapping[str, str] | None = None, timeout: float = 60
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Stream (type, object) events of a collection from ``resource_version``.

        Ends after ``timeout`` seconds (the server closes the watch), or early when the
        connection drops (the caller watches again from its last resourceVersion); raises
        ``WatchExpired`` on 410 Gone so the caller relists, and ``ApiUnavailable`` when it
        cannot be opened within the retry budget. Bookmarks advance the caller's
        resourceVersion without an object change.
        """
        params = {
            **(query or {}),
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(timeout))),
        }
        try:
            response = self._retry(lambda: self._attempt(lambda: self._open_watch(path, list(params.items()), timeout)))
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired() from None
            raise self._translate(exc, "WATCH", path) from None
        except NETWORK_ERRORS as exc:
            raise self._unreachable(exc) from None
        raw = response.response
        try:
            buffer = b""
            for chunk in raw.stream(amt=65536, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:
                            raise WatchExpired()
                        raise ClusterError(f"watch {path} failed: {status.get('message', status)}")
                    yield event["type"], event["object"]
        except NETWORK_ERRORS:
            return  # a dropped watch ends; the caller watches again from its resourceVersion
        finally:
            raw.release_conn()

    def _open_watch(self, path: str, query: list[tuple[str, str]], timeout: float) -> Any:
        """The watch request; the answer's head within the request timeout, then its events
        within the watch's own length plus 30 s (the server ends it after ``timeout``)."""
        with self._counting:
            self.requests += 1
        params = self.api.param_serialize(
            "GET", path, query_params=query, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(*params, _request_timeout=(self._request_timeout() or 30, timeout + 30))
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        allow_missing: bool = False,
    ) -> Any:
        """One API call; returns parsed JSON, or None for a 404 when ``allow_missing``."""
        try:
            return self._send(method, path, list((query or {}).items()), body, content_type)
        except ApiException as exc:
            if exc.status == 404 and allow_missing:
                return None
            raise self._translate(exc, method, path) from None
        except NETWORK_ERRORS as exc:
            raise self._unreachable(exc) from None

    def _gave_up(self) -> str:
        return f"failing for {seconds_text(self.budget.seconds)}, the retry budget"

    def _unreachable(self, exc: BaseException) -> ApiUnavailable:
        return ApiUnavailable(f"cannot reach {self.server}: {short_reason(exc)} ({self._gave_up()})")

    def patch(self, path: str, patch: Any, *, kind: str = "merge", dry_run: bool = False) -> Any:
        """A JSON merge patch (``kind="merge"``) or JSON patch (``kind="json"``) as field manager dsroll."""
        query = {"fieldManager": FIELD_MANAGER, **({"dryRun": "All"} if dry_run else {})}
        content_type = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}[kind]
        return self.request("PATCH", path, query=query, body=patch, content_type=content_type)

    def _translate(self, exc: ApiException, method: str, path: str) -> ClusterError | InputError:
        message = _status_message(exc)
        if exc.status == 401:
            return ClusterError(f"{self.server} rejected the credentials of context {self.context}: {message}")
        if exc.status == 403:
            return ClusterError(f"RBAC denied: {message}")
        if exc.status in (400, 422):
            return InputError(f"the API server rejected {method} {path}: {message}")
        if is_transient(exc):
            where = f"{method} {path} failed ({exc.status})" if exc.status else f"cannot reach {self.server}"
            return ApiUnavailable(f"{where}: {message} ({self._gave_up()})", status=exc.status or None)
        return ClusterError(f"{method} {path} failed ({exc.status}): {message}", status=exc.status)

    def whoami(self) -> str:
        """The user the API server sees (SelfSubjectReview); '?' where it is not allowed."""
        try:
            review = self.request(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
        except ClusterError:
            return "?"
        return str(review.get("status", {}).get("userInfo", {}).get("username", "?"))

    def server_time(self) -> datetime:
        """The API server's clock, to the second: the ``Date`` of its answer to ``GET /version``.

        A restart tells the pods it replaced from the others by their ``creationTimestamp``,
        which the API server sets, so it measures time by the same clock, never the local
        one. ``/version`` is readable by every client (``system:public-info-viewer``).
        """
        try:
            date = self._retry(lambda: self._attempt(lambda: self._date_of("/version")))
        except ApiException as exc:
            raise self._translate(exc, "GET", "/version") from None
        except NETWORK_ERRORS as exc:
            raise self._unreachable(exc) from None
        if not date:
            raise ClusterError(f"{self.server} answered GET /version without a Date header: its clock is unknown")
        return parsedate_to_datetime(date).astimezone(UTC)

    def _date_of(self, path: str) -> str | None:
        with self._counting:
            self.requests += 1
        headers = {"Accept": "application/json"}
        params = self.api.param_serialize("GET", path, header_params=headers, auth_settings=["BearerToken"])
        response = self.api.call_api(*params, _request_timeout=self._request_timeout())
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.getheader("Date")
