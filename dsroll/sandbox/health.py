"""Is a component working? Each check is one cheap HTTP request that never raises.

``wait_for`` turns a check into a bounded wait that fails fast when the process dies,
and names the component and its log either way: a sandbox that does not come up should
say which part failed and where to read why.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from dsroll.errors import SandboxError
from dsroll.sandbox.certs import Pki
from dsroll.sandbox.processes import Component, is_alive, log_tail


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return 0, ""


def etcd_healthy(port: int) -> bool:
    status, body = _get(f"http://127.0.0.1:{port}/health")
    try:
        return status == 200 and json.loads(body).get("health") == "true"
    except ValueError:
        return False


def admin_tls(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return ctx


def apiserver_ready(server: str, tls: ssl.SSLContext) -> bool:
    status, _ = _get(f"{server}/readyz", tls)
    return status == 200


def serving_healthy(port: int) -> bool:
    """/healthz of kube-controller-manager or kube-scheduler (self-signed, anonymous)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    status, body = _get(f"https://127.0.0.1:{port}/healthz", ctx)
    return status == 200 and body.strip() == "ok"


def wait_for(
    check: Callable[[], bool],
    component: Component,
    what: str,
    timeout: float,
    interval: float = 0.2,
) -> float:
    """Poll ``check`` until true; returns the seconds it took.

    Raises SandboxError naming the component and its log when the process exits or the
    timeout passes first.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if check():
            return time.monotonic() - started
        if not is_alive(component):
            raise SandboxError(
                f"{component.name} exited while waiting for {what}; log {component.log}:\n" + log_tail(component.log)
            )
        if time.monotonic() > deadline:
            raise SandboxError(
                f"{component.name}: no {what} after {timeout:.0f}s; log {component.log}:\n" + log_tail(component.log)
            )
        time.sleep(interval)
