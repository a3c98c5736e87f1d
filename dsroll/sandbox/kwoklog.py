"""Whether kwok has let go of a node, or taken it back, in kwok's own eyes (pure).

kwok (v0.7.0) plays a node, and every pod on it, only while its *cached* copy of the
node's Lease names kwok as the holder: each node or pod event is checked against that
cache when it arrives (``readOnlyFunc`` -> ``NodeLeaseController.Held``,
``pkg/kwok/controllers/controller.go``), and an event found read-only is dropped, not
retried. The API server's Lease changes first and kwok's cache follows through a watch:
within milliseconds on a quiet machine, seconds later on a busy one or after a watch
gap. kwok's informers re-watch from resourceVersion "0" (``Option.setup``,
``pkg/utils/informer/event.go``) after client-go's backoff, and in a trial right after
an apiserver restart kwok went on renewing its old copy (409 conflicts) for up to 22 s
while a GET already named the node agent. So "the Lease names the agent" is not "kwok has
let go", and a fixed sleep after it is a guess.

kwok's log is where kwok says so. Its lease controller looks at its cached copy of each
node's Lease once per renew interval (a quarter of ``--node-lease-duration-seconds``)
and writes one of:

* ``Lease already acquired by another holder`` (debug level; the sandbox runs kwok with
  ``-v=debug``): its copy names someone else. The agent's Leases never expire in kwok's
  eyes (``behaviours.held_lease``), so from this line on kwok leaves the node alone.
* ``Syncing lease`` or ``Creating lease``: its copy names kwok, or no one, or none
  exists; it renews or takes the Lease and plays the node. A renewal made from a stale
  copy fails on the resourceVersion (``Failed to sync lease``), so a renewal that
  *landed*, the Lease's renewTime at or after the line, proves kwok's copy was current.

Handing a node back has the mirror-image race: kwok's first ``Syncing lease`` after the
agent clears the holder takes the Lease, and until its cache holds its own new copy it
still drops the node's events. Either of two lines proves the cache caught up: a second
renewal that landed, or a pod event on the node that got past the read-only check
(kwok's debug lines from ``PodController.preprocess``; taking the node, kwok re-lists
its pods at once, so where there are pods this comes within milliseconds).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsroll.sandbox.behaviours import AGENT_IDENTITY, lease_holder

OTHER_HOLDER = "Lease already acquired by another holder"
_OWN_LEASE = ("Syncing lease", "Creating lease")
# PodController.preprocess, which kwok reaches only for an event it did not find read-only
_PREPROCESSED = {("Skip pod", "resource version not changed"), ("Skip pod", "not match any stages")}
_DELAYED = "Delayed play stage"

LEASE_OTHER = "other"  # its lease controller found another holder: kwok leaves the node alone
LEASE_OWN = "own"  # its lease controller found itself, no one or no Lease: it renews or takes it
POD_PLAYED = "pod"  # a pod event on the node got past the read-only check: kwok plays the node


@dataclass(frozen=True)
class Look:
    """One thing kwok's log says about a node: what kwok made of it, and when."""

    node: str
    micros: int  # when kwok logged it, microseconds since the epoch (a renewTime's precision)
    seen: str  # LEASE_OTHER, LEASE_OWN or POD_PLAYED


def micros(timestamp: str) -> int:
    """An RFC 3339 time with any number of fraction digits (kwok logs nanoseconds) -> µs."""
    text = timestamp.strip().removesuffix("Z")
    whole, _, fraction = text.partition(".")
    seconds = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.UTC).timestamp()
    return int(seconds) * 1_000_000 + int((fraction + "000000")[:6])


def _seen(record: Mapping[str, Any]) -> str | None:
    message = record.get("msg")
    if message == OTHER_HOLDER:
        return LEASE_OTHER
    if message in _OWN_LEASE:
        return LEASE_OWN
    if "pod" in record and ((message, record.get("reason")) in _PREPROCESSED or message == _DELAYED):
        return POD_PLAYED
    return None


def parse_line(line: str) -> Look | None:
    """A kwok log line (JSON) -> what it says about a node, or None for any other line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("node"), str):
        return None
    seen = _seen(record)
    if seen is None:
        return None
    try:
        when = micros(str(record.get("time", "")))
    except ValueError:
        return None
    return Look(record["node"], when, seen)


def parse_lines(lines: Iterable[str]) -> list[Look]:
    return [look for look in map(parse_line, lines) if look is not None]


def kwok_let_go(looks: Sequence[Look], node: str, lease: Mapping[str, Any] | None) -> bool:
    """The agent holds ``node``'s Lease (``lease``, as read now) and kwok's latest look at
    it, among ``looks`` (logged since the agent was asked to take it), found another holder."""
    mine = [look.seen for look in looks if look.node == node and look.seen != POD_PLAYED]
    return lease_holder(lease) == AGENT_IDENTITY and bool(mine) and mine[-1] == LEASE_OTHER


def kwok_took_back(looks: Sequence[Look], node: str, lease: Mapping[str, Any] | None) -> bool:
    """kwok holds ``node`` again and its cache knows it.

    Since the agent was asked to release it (the start of ``looks``), kwok took the Lease
    (``lease``, as read now, names kwok and was renewed at or after kwok's first look),
    and then either played a pod event on the node or renewed the Lease again from its
    cache (a renewal from the second look on landed). The take itself may have been made
    while kwok's copy still named no one.
    """
    holder, renewed = lease_holder(lease), ((lease or {}).get("spec") or {}).get("renewTime")
    own = [look.micros for look in looks if look.node == node and look.seen == LEASE_OWN]
    if holder in (None, "", AGENT_IDENTITY) or not renewed or not own or micros(str(renewed)) < own[0]:
        return False
    played = any(look.node == node and look.seen == POD_PLAYED and look.micros > own[0] for look in looks)
    return played or (len(own) >= 2 and micros(str(renewed)) >= own[1])


def describe(looks: Sequence[Look], node: str) -> str:
    """What kwok last made of ``node``'s Lease, for an error message."""
    mine = [look for look in looks if look.node == node and look.seen != POD_PLAYED]
    if not mine:
        return "kwok has not looked at its Lease since"
    last = mine[-1]
    when = dt.datetime.fromtimestamp(last.micros / 1e6, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    if last.seen == LEASE_OWN:
        return f"kwok's last look ({when} UTC) found itself the holder"
    return f"kwok's last look ({when} UTC) found another holder"
