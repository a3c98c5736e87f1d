"""The sandbox's node agent: plays the node behaviours kwok's stages cannot express.

``python -m dsroll.sandbox.nodeagent --server URL --ca F --cert F --key F --lease-seconds N``
runs beside kwok, started and stopped by ``sandbox up/down`` like every component. It
watches nodes for ``sandbox.dsroll.io/node-behaviour`` (see ``behaviours.py``) and, for
the behaviours that need it, takes the node's Lease from kwok:

* ``not-ready``: the Lease is taken and never renewed. kwok stops posting the node's
  status and playing its pods; the node-lifecycle controller, seeing no renewal for its
  grace period, sets Ready=Unknown, taints the node unreachable and marks its pods not
  Ready, exactly as for a kubelet that went silent.
* ``kubelet-gone``: the Lease is taken and renewed, so the node stays Ready, but nothing
  plays its pods: new ones stay Pending, deleted ones stay Terminating unless forced.
* ``slow-start`` / ``slow-pull``: Lease taken and renewed; the agent plays the node's new
  pods itself: Running-but-not-Ready (or ContainerCreating with kubelet-style Pulling /
  Pulled Events) for the configured delay plus jitter, then Running and Ready. Deleted
  pods are finalised at once.

Every Lease the agent holds has a duration kwok never sees run out, so kwok does not take
a node back when a renewal comes late. When the annotation goes away the agent clears the
Lease's holder; kwok takes it within its renew interval and plays the node and its pods
again (``behaviours.released_lease`` says why clearing, not deleting). Plain HTTP with the
admin client certificate, no Kubernetes client library: the agent starts in a fraction of
a second and its only state is in the cluster, so a restarted agent carries on, handing
back the Leases it finds itself holding for nodes that are healthy by now.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from dsroll.sandbox import behaviours as bh

READY_MARK = "node agent watching nodes"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def log(message: str) -> None:
    print(f"{_now()} {message}", flush=True)


class Api:
    """Just enough of the Kubernetes REST API, over urllib with the admin client cert."""

    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        self.server = server.rstrip("/")
        self.tls = ssl.create_default_context(cafile=ca)
        self.tls.load_cert_chain(cert, key)

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", timeout: float = 10
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.tls, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def watch(self, path: str, resource_version: str) -> Iterator[dict[str, Any]]:
        sep = "&" if "?" in path else "?"
        url = f"{self.server}{path}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds=60"
        url += f"&resourceVersion={urllib.parse.quote(resource_version)}"
        with urllib.request.urlopen(url, context=self.tls, timeout=90) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)


class NodeAgent:
    def __init__(self, api: Api, lease_seconds: int) -> None:
        self.api = api
        self.lease_seconds = lease_seconds
        self.lock = threading.Lock()
        self.wanted: dict[str, bh.NodeBehaviour | None] = {}
        self.nodes: dict[str, tuple[str, str]] = {}  # name -> (InternalIP, podCIDR)
        self.held: dict[str, float] = {}  # node -> monotonic time of our last Lease write
        self.due: dict[str, float] = {}  # pod uid -> monotonic time its next step is due
        self.reported: set[tuple[str, str]] = set()

    # --- nodes ---------------------------------------------------------------------------

    def _see_node(self, node: dict[str, Any], deleted: bool = False) -> None:
        meta = node["metadata"]
        name = meta["name"]
        value = (meta.get("annotations") or {}).get(bh.NODE_BEHAVIOUR)
        try:
            behaviour = bh.parse(value)
        except bh.BehaviourError as exc:
            behaviour = None
            if (name, str(value)) not in self.reported:
                self.reported.add((name, str(value)))
                self._event_on_node(name, str(exc))
        ip = next(
            (a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a["type"] == "InternalIP"),
            "",
        )
        with self.lock:
            if deleted:
                self.wanted.pop(name, None)
                self.nodes.pop(name, None)
                self.held.pop(name, None)
            else:
                self.wanted[name] = behaviour
                self.nodes[name] = (ip, (node.get("spec") or {}).get("podCIDR") or "")

    def watch_nodes(self) -> None:
        """List, then watch from the list's resourceVersion; relist after any failure."""
        announced = False
        while True:
            try:
                status, body = self.api.call("GET", "/api/v1/nodes")
                if status != 200:
                    raise OSError(f"list nodes: HTTP {status}")
                seen = {n["metadata"]["name"] for n in body["items"]}
                for node in body["items"]:
                    self._see_node(node)
                with self.lock:
                    for gone in set(self.wanted) - seen:
                        self.wanted.pop(gone, None)
                if not announced:
                    self._adopt_leases(seen)
                    log(READY_MARK)
                    announced = True
                rv = body["metadata"]["resourceVersion"]
                while True:
                    for event in self.api.watch("/api/v1/nodes", rv):
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            raise OSError(f"watch nodes: {obj.get('message')}")
                        rv = obj["metadata"]["resourceVersion"]
                        if kind != "BOOKMARK":
                            self._see_node(obj, deleted=kind == "DELETED")
            except (OSError, ValueError, KeyError) as exc:
                log(f"node watch interrupted ({exc}); relisting")
                time.sleep(1)

    def _event_on_node(self, node: str, message: str) -> None:
        self._event(
            "default",
            {"kind": "Node", "name": node, "apiVersion": "v1"},
            node,
            "Warning",
            "UnknownNodeBehaviour",
            message,
        )
        log(f"{node}: {message}")

    def _event(self, ns: str, involved: dict[str, str], node: str, kind: str, reason: str, message: str) -> None:
        now = _now()
        body = {
            "metadata": {"generateName": f"{involved['name']}.", "namespace": ns},
            "involvedObject": {**involved, "namespace": ns} if involved["kind"] == "Pod" else involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet",
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.api.call("POST", f"/api/v1/namespaces/{ns}/events", body)

    # --- leases --------------------------------------------------------------------------

    def _adopt_leases(self, nodes: set[str]) -> None:
        """Leases a previous agent process left holding become this one's to renew or release."""
        status, body = self.api.call("GET", bh.LEASES)
        if status != 200:
            return
        with self.lock:
            for lease in body["items"]:
                name = lease["metadata"]["name"]
                if name in nodes and bh.held_by_agent(lease):
                    self.held.setdefault(name, 0.0)

    def _write_lease(self, node: str, renew: bool) -> bool:
        path = bh.lease_path(node)
        status, lease = self.api.call("GET", path)
        if status not in (200, 404):
            return False
        body = bh.held_lease(lease if status == 200 else None, node, _micro_now(), renew)
        if status == 404:
            status, _ = self.api.call("POST", bh.LEASES, body)
            return status == 201
        status, _ = self.api.call("PUT", path, body)
        return status == 200  # a 409 (kwok renewed meanwhile) is retried on the next tick

    def _release_lease(self, node: str) -> bool:
        path = bh.lease_path(node)
        status, lease = self.api.call("GET", path)
        if status == 200 and bh.held_by_agent(lease):
            status, _ = self.api.call("PUT", path, bh.released_lease(lease))  # its resourceVersion: no lost update
        return status in (200, 404)

    def _reconcile_lease(self, node: str, behaviour: bh.NodeBehaviour | None) -> None:
        last = self.held.get(node)
        if behaviour is None or not behaviour.holds_lease:
            if last is not None and self._release_lease(node):
                self.held.pop(node, None)
                log(f"{node}: healthy again, Lease handed back to kwok")
            return
        due = last is None or (behaviour.renews_lease and time.monotonic() - last >= self.lease_seconds / 4)
        if due and self._write_lease(node, behaviour.renews_lease):
            if last is None:
                log(
                    f"{node}: {behaviour.annotation()} (Lease taken{'' if behaviour.renews_lease else ', not renewed'})"
                )
            self.held[node] = time.monotonic()

    # --- pods on nodes the agent plays ---------------------------------------------------

    def _play_pods(self, node: str, behaviour: bh.NodeBehaviour) -> None:
        selector = urllib.parse.quote(f"spec.nodeName={node}")
        status, body = self.api.call("GET", f"/api/v1/pods?fieldSelector={selector}")
        if status != 200:
            return
        host_ip, cidr = self.nodes.get(node, ("", ""))
        used = {(p.get("status") or {}).get("podIP") for p in body["items"]}
        for pod in body["items"]:
            self._step(pod, node, behaviour, host_ip, cidr, {u for u in used if u})

    def _step(
        self, pod: dict[str, Any], node: str, behaviour: bh.NodeBehaviour, host_ip: str, cidr: str, used: set[str]
    ) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        base = f"/api/v1/namespaces/{ns}/pods/{name}"
        stage = bh.pod_stage(pod)
        now = time.monotonic()
        involved = {"kind": "Pod", "name": name, "uid": uid, "apiVersion": "v1"}
        if stage == "deleting":
            self.api.call("DELETE", base, {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
            self.due.pop(uid, None)
            return
        if stage == "ready" or (
            stage == "starting" and uid not in self.due and bh.POD_BEHAVIOUR in (meta.get("annotations") or {})
        ):
            return
        if stage == "new":
            if behaviour.kind == "slow-pull":
                st = bh.creating_status(pod, host_ip, _now())
                for c in pod["spec"]["containers"]:
                    self._event(ns, involved, node, "Normal", "Pulling", f'Pulling image "{c["image"]}"')
            else:
                st = bh.running_status(pod, host_ip, bh.pod_ip(cidr, used, uid), _now(), ready=False)
            self._patch_status(base, st)
            self.due[uid] = now + behaviour.delay()
            return
        if uid not in self.due:  # creating/starting, seen first by this agent (it restarted)
            self.due[uid] = now + behaviour.delay()
            return
        if now < self.due[uid]:
            return
        if stage == "creating":
            for c in pod["spec"]["containers"]:
                self._event(ns, involved, node, "Normal", "Pulled", f'Successfully pulled image "{c["image"]}"')
                self._event(ns, involved, node, "Normal", "Started", f"Started container {c['name']}")
        ip = (pod.get("status") or {}).get("podIP") or bh.pod_ip(cidr, used, uid)
        self._patch_status(base, bh.running_status(pod, host_ip, ip, _now(), ready=True))
        self.due.pop(uid, None)

    def _patch_status(self, base: str, status: dict[str, Any]) -> None:
        self.api.call("PATCH", f"{base}/status", {"status": status}, "application/strategic-merge-patch+json")

    # --- the loop ------------------------------------------------------------------------

    def tick(self) -> None:
        with self.lock:
            wanted = dict(self.wanted)
            held = set(self.held)
        for node in set(wanted) | held:
            behaviour = wanted.get(node)
            self._reconcile_lease(node, behaviour)
            if behaviour is not None and behaviour.plays_pods and node in self.held:
                self._play_pods(node, behaviour)

    def run(self, interval: float = 0.5) -> None:
        threading.Thread(target=self.watch_nodes, daemon=True, name="watch-nodes").start()
        while True:
            try:
                self.tick()
            except (OSError, ValueError, KeyError) as exc:
                log(f"tick failed: {exc}")
            time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dsroll-sandbox-node-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--lease-seconds", type=int, default=40)
    args = parser.parse_args(argv)
    log(f"node agent for {args.server}, renewing the Leases it holds every {args.lease_seconds / 4:g}s")
    NodeAgent(Api(args.server, args.ca, args.cert, args.key), args.lease_seconds).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
