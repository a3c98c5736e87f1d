"""What a rollout run is given and what it returns: options, targets, results.

Values only; ``executor.py`` produces them and ``output.py`` shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dsroll.rollout import revisions as revs
from dsroll.rollout.state import RolloutState, RunKind


class Result(StrEnum):
    COMPLETE = "complete"
    PARTITIONED = "partitioned"
    AWAITING_APPROVAL = "awaiting-approval"
    PAUSED = "paused"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the cluster failed after this run changed something

    @property
    def exit_code(self) -> int:
        if self in (Result.COMPLETE, Result.PARTITIONED):
            return 0
        if self is Result.INTERRUPTED:
            return 5
        return 3 if self in (Result.AWAITING_APPROVAL, Result.PAUSED) else 1


@dataclass(frozen=True)
class Target:
    """What the variant moves to: a manifest to apply, or a revision's template to restore."""

    manifest: Mapping[str, Any] | None = None
    revision: revs.Revision | None = None


@dataclass(frozen=True)
class RunOptions:
    who: str
    commit: str | None = None
    operation: RunKind = RunKind.rollout
    approve: bool = False  # `resume`: approve the manual pause found
    yes: bool = False  # approve every manual pause
    interactive: bool = False
    steps: tuple[str, ...] | None = None
    ask: Any = None  # (question) -> bool, on a TTY
    backup_dir: Path | None = None  # where orphan replacements save their local backup file


@dataclass
class VariantResult:
    namespace: str
    name: str
    action: str
    result: Result
    phase: str | None = None
    target_revision: str | None = None
    previous_revision: str | None = None
    nodes_updated: int = 0
    nodes_total: int = 0
    failure: dict[str, str] | None = None
    message: str = ""
    skipped_nodes: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        namespace: str,
        name: str,
        action: str,
        result: Result,
        state: RolloutState | None,
        planned_nodes: int,
        *,
        message: str = "",
        total: int | None = None,
        updated: int | None = None,
    ) -> VariantResult:
        """A variant's result as its recorded state tells it (a complete one has every node)."""
        nodes = state.node_count if state else planned_nodes
        done = state.nodes_done if state else 0
        if result is Result.COMPLETE and state:
            done = state.updatable
        return cls(
            namespace=namespace,
            name=name,
            action=action,
            result=result,
            phase=state.phase.value if state else None,
            target_revision=state.target_revision if state else None,
            previous_revision=state.previous_revision if state else None,
            nodes_updated=updated if updated is not None else done,
            nodes_total=total if total is not None else nodes,
            failure={"node": state.failure.node, "reason": state.failure.reason} if state and state.failure else None,
            message=message,
            skipped_nodes=[
                {"node": s.node, "reason": s.reason.value, "detail": s.detail} for s in (state.skipped if state else ())
            ],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "action": self.action,
            "result": self.result.value,
            "phase": self.phase,
            "targetRevision": self.target_revision,
            "previousRevision": self.previous_revision,
            "nodesUpdated": self.nodes_updated,
            "nodesTotal": self.nodes_total,
            "failure": self.failure,
            "message": self.message,
            "skippedNodes": self.skipped_nodes,
        }


@dataclass
class RunSummary:
    """What a whole run did, variant by variant: the summary printed at its end."""

    environment: str
    operation: str
    results: list[VariantResult]
    api_requests: int
    elapsed: float
    dry_run: bool = False
    replacements: list[dict[str, Any]] = field(default_factory=list)
    interruption: str | None = None  # why the run stopped after changing the cluster
    namespaces_created: list[str] = field(default_factory=list)  # cluster.createNamespace: created by this run

    @property
    def result(self) -> str:
        if self.dry_run:
            return "dry-run"
        if self.interruption is not None:
            return Result.INTERRUPTED.value
        stopped = next((r for r in self.results if r.result.exit_code != 0), None)
        if stopped is not None:
            return stopped.result.value
        if any(r.result is Result.PARTITIONED for r in self.results):
            return Result.PARTITIONED.value
        return Result.COMPLETE.value

    @property
    def exit_code(self) -> int:
        if self.interruption is not None:
            return Result.INTERRUPTED.exit_code
        return next((r.result.exit_code for r in self.results if r.result.exit_code != 0), 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "operation": self.operation,
            "result": self.result,
            "exitCode": self.exit_code,
            "apiRequests": self.api_requests,
            "elapsedSeconds": round(self.elapsed, 2),
            "variants": [r.to_json() for r in self.results],
            "replacements": self.replacements,
            "interruption": self.interruption,
            "namespacesCreated": self.namespaces_created,
        }


class NodeFailed(Exception):
    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"{node}: {reason}")
        self.node = node
        self.reason = reason


class SecondHand(Exception):
    """Someone else changed the DaemonSet's spec under the rollout: stop replacing pods."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Stopped(Exception):
    """A pause or abort requested from another process, honoured between batches."""

    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action
