"""What a running rollout tells people: progress on a TTY, log lines, JSON lines, Events.

The executor calls ``emit`` for every transition and ``progress`` as nodes move; this
module decides how each audience sees it. Kubernetes Events go through ``Kube``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from dsroll.kube import Kube

from dsroll.errors import DsrollError

#: Transitions that also become a Kubernetes Event on the DaemonSet: reason, warning.
_K8S_EVENTS = {
    "start": ("RolloutStarted", False),
    "step-complete": ("RolloutStepComplete", False),
    "complete": ("RolloutComplete", False),
    "partitioned": ("RolloutPartitioned", False),
    "node-failed": ("RolloutNodeFailed", True),
    "node-skipped": ("RolloutNodeSkipped", True),
    "node-joined": ("RolloutNodeJoined", False),
    "node-gone": ("RolloutNodeGone", True),
    "rollback": ("RollingBack", True),
    "rolled-back": ("RolledBack", True),
    "paused": ("RolloutPaused", False),
    "aborted": ("RolloutAborted", True),
    "failed": ("RolloutFailed", True),
}


class Reporter:
    def __init__(self, kube: Kube | None, *, json_lines: bool, tty: bool, quiet: bool = False) -> None:
        self.kube = kube
        self.json_lines = json_lines
        self.quiet = quiet
        self.started = time.monotonic()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if tty and not quiet:  # rich's progress display loads only for a terminal (start-up time)
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.fields[variant]}[/]"),
                TextColumn("{task.fields[step]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[flight]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True, highlight=False),
                transient=False,
            )
            self._progress.start()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def emit(
        self,
        event: str,
        variant: str,
        message: str,
        *,
        daemonset: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        if self.json_lines:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            line = {"time": now, "event": event, "variant": variant, "message": message, **fields}
            print(json.dumps(line), flush=True)
        if not self.quiet:
            text = f"{variant}: {message}"
            if self._progress is not None:
                self._progress.console.print(text)
            else:
                print(text, file=sys.stderr, flush=True)
        if event in _K8S_EVENTS and daemonset is not None and self.kube is not None:
            reason, warning = _K8S_EVENTS[event]
            try:
                self.kube.events.create(daemonset, reason, message, warning=warning)
            except DsrollError as exc:  # an Event is a courtesy; the rollout goes on
                print(f"warning: could not record Event {reason}: {exc}", file=sys.stderr)

    def note(self, event: str, message: str) -> None:
        """A line about the run as a whole, not one variant (the API server away, and back):
        a JSON line with ``"variant": null``, and the message on stderr. Any thread may call it."""
        if self.json_lines:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            print(json.dumps({"time": now, "event": event, "variant": None, "message": message}), flush=True)
        if not self.quiet:
            if self._progress is not None:
                self._progress.console.print(message)
            else:
                print(message, file=sys.stderr, flush=True)

    def progress(
        self, variant: str, *, step: int, steps: int, done: int, total: int, in_flight: Collection[str]
    ) -> None:
        """The progress display's line for ``variant`` (a terminal only: called after every
        event, so without one it costs nothing, not even ordering ``in_flight``)."""
        if self._progress is None:
            return
        first = sorted(in_flight)[:3]
        flight = f"replacing {', '.join(first)}{' …' if len(in_flight) > 3 else ''}" if in_flight else ""
        fields = {"variant": variant, "step": f"step {step}/{steps}", "flight": flight}
        if variant not in self._tasks:
            self._tasks[variant] = self._progress.add_task("", total=total, completed=done, **fields)
        else:
            self._progress.update(self._tasks[variant], total=total, completed=done, **fields)

    def ask(self, question: str, ask: Callable[[str], bool]) -> bool:
        """A question on the terminal, with the progress display out of its way."""
        if self._progress is not None:
            self._progress.stop()
        try:
            return ask(question)
        finally:
            if self._progress is not None:
                self._progress.start()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started
