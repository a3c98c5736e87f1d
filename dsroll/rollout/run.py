"""Run a plan: hand each variant's plan to the executor in order, stop at the first that does not finish."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dsroll.errors import DsrollError, InputError, Terminated
from dsroll.labels import MANAGED_BY, MANAGER
from dsroll.namespaces import CREATE_KEY, namespace_manifest, to_create
from dsroll.plan import Action, Plan, VariantPlan
from dsroll.rollout import backup, replacements
from dsroll.rollout.executor import VariantRollout
from dsroll.rollout.outcome import Result, RunOptions, RunSummary, Target, VariantResult
from dsroll.rollout.reporter import Reporter

if TYPE_CHECKING:
    from dsroll.kube import Kube


def execute(
    kube: Kube,
    plan: Plan,
    options: RunOptions,
    reporter: Reporter,
    *,
    prune: bool = False,
    targets: Mapping[tuple[str, str], Target] | None = None,
    retry_budget: float | None = None,
) -> RunSummary:
    """Run every variant's plan in order; stop at the first that does not finish.

    The members of an orphan replacement run together, as one handover, where the first
    of them comes in the plan. While it runs, the client rides out an API server outage
    of up to ``retry_budget`` seconds (``kube/retry.py``). An error that would say
    "nothing was applied" (exit 2), such as an outage longer than that, or Ctrl-C or
    SIGTERM, once this run has changed the cluster, ends the run as interrupted instead:
    the summary says how far it got, and running again continues from the state recorded
    in the cluster. The namespaces the plan creates (``cluster.createNamespace``) are
    created first.
    """
    with _riding_out(kube, retry_budget, reporter):
        return _execute(kube, plan, options, reporter, prune=prune, targets=targets)


@contextlib.contextmanager
def _riding_out(kube: Kube, seconds: float | None, reporter: Reporter) -> Iterator[None]:
    """The run's retry budget in force, and the operator told when the API server goes away and comes back."""
    if seconds is None:
        yield
        return
    with kube.retry_budget(seconds):
        kube.on_outage = reporter.note
        try:
            yield
        finally:
            kube.on_outage = None


def _execute(
    kube: Kube,
    plan: Plan,
    options: RunOptions,
    reporter: Reporter,
    *,
    prune: bool,
    targets: Mapping[tuple[str, str], Target] | None,
) -> RunSummary:
    results: list[VariantResult] = []
    handed: set[str] = set()
    done: list[dict[str, Any]] = []
    by_name = {vp.name: vp for vp in plan.variants}
    writes = kube.writes
    in_flight: list[VariantPlan] = []
    rollout: VariantRollout | None = None
    created: list[str] = []
    try:
        for name in to_create(plan.namespaces):  # before anything else: every variant's objects live there
            if kube.namespaces.create(namespace_manifest(name, plan.environment)):
                created.append(name)
                reporter.emit(
                    "namespace-created",
                    name,
                    f"created namespace {name} ({CREATE_KEY}: true), labelled {MANAGED_BY}={MANAGER}",
                )
        for vp in plan.variants:
            if vp.action is Action.UNCHANGED or (vp.action is Action.PRUNE and not prune):
                if vp.action is Action.PRUNE:
                    why = (
                        "no longer rendered: the applier prunes it (applier: external)"
                        if vp.policy.external
                        else "no longer rendered; --prune deletes it"
                    )
                    reporter.emit("not-pruned", f"{vp.namespace}/{vp.name}", why)
                continue
            group = next((g for g in plan.replacements if vp.key in replacements.replaced_keys(g)), None)
            if group is not None:
                if group.backup in handed:
                    continue
                handed.add(group.backup)
                members = {t: by_name[t] for t in group.targets if t in by_name}
                from dsroll.rollout.handover import Handover  # orphan replacement only: start-up time

                runner = Handover(
                    kube, group, members, options, reporter, policy=vp.policy, environment=plan.environment,
                    backup_dir=options.backup_dir or backup.default_backup_dir(),
                )  # fmt: skip
                in_flight, rollout = list(members.values()) or [vp], None
                try:
                    results.extend(runner.run())
                finally:
                    done.append(runner.summary())
            elif vp.action is Action.ORPHAN_REPLACE:
                raise InputError(f"{vp.namespace}/{vp.name}: {vp.reason}, but the plan holds no replacement for it")
            else:
                target = (targets or {}).get(vp.key) or (Target(manifest=vp.manifest) if vp.applies else None)
                in_flight, rollout = [vp], VariantRollout(kube, vp, options, reporter, target)
                results.append(rollout.run())
            in_flight, rollout = [], None
            if results and results[-1].result.exit_code != 0:
                break
    except (DsrollError, KeyboardInterrupt) as exc:
        refused = isinstance(exc, KeyboardInterrupt) or exc.exit_code == InputError.exit_code
        if not refused or kube.writes == writes:
            raise
        cause = _cause(exc)
        for vp in in_flight:
            reporter.emit("interrupted", f"{vp.namespace}/{vp.name}", cause)
        if rollout is not None:
            results.append(rollout.interrupted(cause))
        else:
            results.extend(VariantResult(vp.namespace, vp.name, vp.action.value, Result.INTERRUPTED, message=cause)
                           for vp in in_flight)  # fmt: skip
        return RunSummary(
            plan.environment, options.operation.value, results, kube.requests, reporter.elapsed, False, done, cause,
            created,
        )  # fmt: skip
    return RunSummary(
        plan.environment, options.operation.value, results, kube.requests, reporter.elapsed, False, done,
        namespaces_created=created,
    )  # fmt: skip


def _cause(exc: BaseException) -> str:
    """Why a run was cut off, as its summary says it."""
    if isinstance(exc, Terminated):
        return "stopped by SIGTERM"
    return "stopped by Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
