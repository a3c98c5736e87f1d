"""Text and JSON views of results. Colour and tables only on a TTY; JSON is stable.

The JSON shapes are documented in README.md ("JSON output"); change them only
together with that section.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsroll.diff import Change, DiffReport
from dsroll.namespaces import NamespaceStatus, Presence
from dsroll.nodes import NodeReport
from dsroll.orphans import Operation, ReplacementPlan
from dsroll.plan import Plan
from dsroll.planfile import plan_to_json
from dsroll.render import RenderResult
from dsroll.rendered import FileChange
from dsroll.rollout.outcome import RunSummary

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from dsroll.workflow import Scaffolded

_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    """The rich Console for stdout (``out``) or stderr (``err``), made on first use: rich
    costs ~25 ms to import, and a command that prints JSON and plain lines never needs it."""
    if name not in _consoles:
        from rich.console import Console

        stderr = name == "err"
        wide = (sys.stderr if stderr else sys.stdout).isatty()
        # Piped output is never cut to 80 columns: like kubectl, a table is as wide as its content.
        _consoles[name] = Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if wide else 400)
    return _consoles[name]


def __getattr__(name: str) -> Console:
    """``output.out`` and ``output.err``: the two Consoles, made when first asked for."""
    if name in ("out", "err"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _out() -> Console:
    return _console("out")


def _err() -> Console:
    return _console("err")


def _text(text: str = "", style: str = "") -> Text:
    from rich.text import Text

    return Text(text, style=style)


def emit_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _note(label: str, style: str, message: str) -> None:
    """A line on stderr, so stdout stays clean for JSON and diffs: styled on a terminal,
    plain text otherwise (without loading rich, a CI job's every command spares its import)."""
    if sys.stderr.isatty():
        _err().print(_text(label, style=style) + _text(message, style="" if label else style))
    else:
        print(f"{label}{message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    """Progress and context lines."""
    _note("", "dim", message)


def warn(message: str) -> None:
    _note("warning: ", "yellow", message)


def error(message: str) -> None:
    _note("error: ", "bold red", message)


def _table(*headers: str) -> Table:
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def render_result(result: RenderResult, changes: Sequence[FileChange], *, check: bool, fmt: str) -> None:
    drift = [c for c in changes if c.drift]
    if fmt == "json":
        emit_json(
            {
                "environment": result.env.name,
                "renderedDir": result.env.rendered_dir,
                "check": check,
                "drift": bool(drift),
                "files": [
                    {"path": c.path, "status": c.status, "workload": c.workload, "class": c.cls} for c in changes
                ],
                "warnings": list(result.warnings),
            }
        )
        return
    for warning in result.warnings:
        warn(warning)
    if check:
        if not drift:
            _out().print(f"{result.env.rendered_dir} is up to date ({len(result.variants)} variants)")
        for change in drift:
            verb = "differs from the render" if change.status == "would-write" else "belongs to no variant"
            _out().print(_text(f"{change.status:<13}", style="yellow") + _text(f"{change.path}: {verb}"))
        if drift:
            _out().print(f"{len(drift)} file(s) drifted: run `dsroll render {result.env.name}` and commit the result")
        return
    style = {"written": "green", "removed": "red", "unchanged": "dim"}
    for change in changes:
        _out().print(_text(f"{change.status:<10}", style=style[change.status]) + _text(change.path))
    counts = {s: sum(1 for c in changes if c.status == s) for s in ("written", "unchanged", "removed")}
    _out().print(
        f"{len(result.variants)} variants of {result.env.name} in {result.env.rendered_dir}: "
        f"{counts['written']} written, {counts['unchanged']} unchanged, {counts['removed']} removed"
    )


def _diff_text(text: str) -> Text:
    styled = _text()
    for line in text.splitlines(keepends=True):
        style = (
            "bold"
            if line.startswith(("+++", "---"))
            else "green"
            if line.startswith("+")
            else "red"
            if line.startswith("-")
            else "cyan"
            if line.startswith("@@")
            else ""
        )
        styled.append(line, style=style)
    return styled


def diff_report(report: DiffReport, *, fmt: str) -> None:
    if fmt == "json":
        emit_json(report.to_json())
        return
    changed = [v for v in report.variants if v.change is not Change.UNCHANGED]
    for v in changed:
        extra = f" ({v.ignored} ignored difference{'s' if v.ignored != 1 else ''})" if v.ignored else ""
        _out().print(_text(f"{v.namespace}/{v.name}: ", style="bold") + _text(v.change.describe + extra))
        if v.note:
            _out().print(_text(f"  note: {v.note}", style="yellow"))
        _out().print(_diff_text(v.diff), end="")
    for found in report.replacements:
        for line in replacement_lines(ReplacementPlan.from_json(found)):
            _out().print(line, markup=False)
        for target, steps in found["steps"].items():
            for number, nodes in enumerate(steps, start=1):
                _out().print(f"  {target} step {number}: {_nodes_text(nodes) or 'nothing to replace'}", markup=False)
    for line in namespace_lines(report.namespaces):
        _out().print(line, markup=False)
    s = report.summary()
    ignored = f", {s['ignoredDifferences']} ignored difference(s)" if s["ignoredDifferences"] else ""
    masked = f", {s['maskedValues']} env value(s) masked (--show-secrets shows them)" if s["maskedValues"] else ""
    _out().print(
        f"{len(report.variants)} variants against {report.against}: {s['added']} added, {s['removed']} removed, "
        f"{s['changed']} changed, {s['unchanged']} unchanged{ignored}{masked}",
        markup=False,
    )


def nodes_report(report: NodeReport, *, fmt: str) -> None:
    if fmt == "json":
        emit_json(report.to_json())
        return
    table = _table("NODE", "ZONE", "CLASS", "MATCHED")
    for node in report.nodes:
        table.add_row(node.name, node.zone or "-", node.winner or "<none>", ",".join(node.matched) or "-")
    _out().print(table)
    for workload, names in report.uncovered.items():
        classes = ", ".join(report.workload_classes[workload])
        if names:
            _out().print(
                f"workload {workload} (classes {classes}): no variant on {len(names)} node(s): {', '.join(names)}"
            )
        else:
            _out().print(f"workload {workload} (classes {classes}): every node runs exactly one variant")


# --- rollouts ------------------------------------------------------------------------


def _nodes_text(nodes: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(nodes[:limit])
    return shown + (f" … (+{len(nodes) - limit})" if len(nodes) > limit else "")


def plan_view(plan: Plan, *, fmt: str, stream: Console | None = None) -> None:
    if fmt == "json":
        emit_json(plan_to_json(plan, manifests=False))
        return
    console = stream or _out()
    for line in namespace_lines(plan.namespaces):
        console.print(line, markup=False)
    table = _table("VARIANT", "ACTION", "NODES", "STEPS")
    for v in plan.variants:
        counts = " → ".join(str(s.count) for s in v.steps) or "-"
        kept = f" (partition: {v.partition} kept)" if v.partition else ""
        table.add_row(f"{v.namespace}/{v.name}", v.action.value, str(len(v.nodes)), counts + kept)
    console.print(table)
    for v in plan.variants:
        console.print(f"  {v.name}: {v.reason}", markup=False)
        if v.applied is not None:
            console.print(f"  {v.name} conducts {v.applied.describe()}", markup=False)
        for step in v.steps:
            batches = " | ".join(_nodes_text(b, 4) for b in step.batches) or "nothing to replace"
            console.print(f"  {v.name} step {step.number} (→ {step.count}/{v.updatable}): {batches}", markup=False)
        for s in v.skipped:
            console.print(f"  {v.name} skips {s.node}: {s.reason.value} ({s.detail})", markup=False)
    for r in plan.replacements:
        for line in replacement_lines(r):
            console.print(line, markup=False)


def namespace_lines(statuses: Sequence[NamespaceStatus]) -> list[str]:
    """The namespaces that are not simply there, and what a rollout does about each."""
    return [s.describe() for s in statuses if s.presence is not Presence.ACTIVE]


def replacement_lines(r: ReplacementPlan) -> list[str]:
    """An orphan replacement as the operator reads it before saying yes."""
    verb = "orphan-replace" if r.operation is Operation.replace else "restore"
    lines = [f"{verb} {r.namespace}/{r.workload}: {r.reason}"]
    lines.append(f"  backup: configmap {r.namespace}/{r.backup} and a local file of the same name")
    if r.operation is Operation.replace:
        gone = ", ".join(f"{s.name} ({len(s.nodes)} pod(s))" for s in r.sources)
        lines.append(f"  delete (propagationPolicy Orphan): {gone}")
        for target in r.targets:
            nodes = r.adopted(target)
            lines.append(f"  create {target} (OnDelete): adopts {len(nodes)} pod(s) on {_nodes_text(nodes) or '-'}")
    else:
        lines.append(f"  delete (propagationPolicy Orphan): {', '.join(r.targets)}")
        lines.append(f"  recreate from the backup (OnDelete): {', '.join(s.name for s in r.sources)}")
    for p in r.unplaced:
        lines.append(f"  unplaced: pod {p.pod} on {p.node or '-'}: {p.reason}; it is deleted")
    return lines


def _failure(failure: Mapping[str, str]) -> str:
    """A recorded failure: of a node ("node: reason"), or of the whole variant (its reason)."""
    return f"{failure['node']}: {failure['reason']}" if failure.get("node") else failure["reason"]


def run_summary(
    summary: RunSummary, *, fmt: str, compact: bool = False, extra: Mapping[str, Any] | None = None
) -> None:
    if fmt == "json":
        data = {**summary.to_json(), **(extra or {})}
        sys.stdout.write((json.dumps(data) if compact else json.dumps(data, indent=2)) + "\n")
        return
    for r in summary.results:
        failure = f" — {_failure(r.failure)}" if r.failure else ""
        where = f" on revision {r.target_revision}" if r.target_revision else " Ready"
        skipped = f", {len(r.skipped_nodes)} node(s) skipped" if r.skipped_nodes else ""
        _out().print(
            f"{r.namespace}/{r.name}: {r.result.value}{skipped}, {r.nodes_updated}/{r.nodes_total} node(s){where}"
            f"{failure}",
            markup=False,
        )
        for s in r.skipped_nodes:
            _out().print(f"  skipped {s['node']}: {s['reason']} ({s['detail']})", markup=False)
    for r in summary.replacements:
        backup = r["backup"]
        _out().print(
            f"{r['namespace']}/{r['workload']}: {r['operation']} {r['stage']}; "
            f"backup: configmap {backup['configMap']}, file {backup['file']}",
            markup=False,
        )
    _out().print(
        f"{summary.operation} {summary.result} in {summary.elapsed:.1f}s ({summary.api_requests} API requests)",
        markup=False,
    )


def status_view(
    env: str, rows: Sequence[Mapping[str, Any]], *, fmt: str, replacements: Sequence[Mapping[str, Any]] = ()
) -> None:
    if fmt == "json":
        emit_json({"environment": env, "variants": list(rows), "replacements": list(replacements)})
        return
    table = _table("VARIANT", "PHASE", "STEP", "UPDATED", "READY", "TOTAL", "STRATEGY", "WHO", "SINCE")
    for row in rows:
        name = f"{row['namespace']}/{row['name']}"
        if not row["deployed"]:
            table.add_row(name, "not deployed", *["-"] * 7)
            continue
        state = row.get("rollout") or {}
        steps = state.get("steps") or []
        phase = state.get("phase", "-") + (f" ({row['request']} requested)" if row.get("request") else "")
        table.add_row(
            name,
            phase,
            f"{min(state.get('step', 0) + 1, len(steps))}/{len(steps)}" if steps else "-",
            str(row["nodesUpdated"]),
            str(row["nodesReady"]),
            str(row["nodesTotal"]),
            row.get("updateStrategy") or "-",
            state.get("who", "-"),
            state.get("startedAt", "-"),
        )
    _out().print(table)
    for row in rows:
        if row.get("stable"):
            stable = row["stable"]
            commit = f", commit {stable['commit'][:12]}" if stable.get("commit") else ""
            _out().print(
                f"{row['namespace']}/{row['name']}: applied by another hand (applier: external); stable revision "
                f"{stable['revision']}{commit}",
                markup=False,
            )
        failure = (row.get("rollout") or {}).get("failure")
        if failure:
            _out().print(f"{row['namespace']}/{row['name']}: {_failure(failure)}", markup=False)
        listed = (row.get("rollout") or {}).get("skipped") or []
        for s in listed:
            _out().print(
                f"{row['namespace']}/{row['name']}: skipped {s['node']}: {s['reason']} ({s.get('detail', '')}); "
                "a later rollout or resume does it",
                markup=False,
            )
        more = int((row.get("rollout") or {}).get("skippedCount") or 0) - len(listed)
        if more > 0:  # the state keeps a sample; held and NotReady nodes are the rest
            _out().print(f"{row['namespace']}/{row['name']}: and {more} more node(s) skipped", markup=False)
    for r in replacements:
        _out().print(
            f"{r['namespace']}/{r['workload']}: orphan replacement {', '.join(r['deletes'])} → "
            f"{', '.join(r['creates'])}: {r['operation']}, stage {r['stage']} "
            f"(configmap {r['configMap']}, by {r['who']}, {r['updatedAt']})",
            markup=False,
        )


def watch_progress(row: Mapping[str, Any], *, fmt: str, line: str) -> None:
    """One change seen by ``status --watch``: a JSON line, or ``line`` as text."""
    if fmt == "json":
        sys.stdout.write(json.dumps({"event": "progress", **row}, separators=(",", ":")) + "\n")
    else:
        _out().print(line, markup=False)
    sys.stdout.flush()


def watch_result(env: str, code: int, message: str, rows: Sequence[Mapping[str, Any]], *, fmt: str) -> None:
    """How ``status --watch`` ended: the summary (JSON), or its one line (text; stderr when not 0)."""
    if fmt == "json":
        emit_json({"environment": env, "exitCode": code, "message": message, "variants": list(rows)})
    elif code == 0:
        _out().print(message, markup=False)
    else:
        error(message)


def history_view(env: str, rows: Sequence[Mapping[str, Any]], *, fmt: str) -> None:
    if fmt == "json":
        emit_json({"environment": env, "variants": list(rows)})
        return
    for row in rows:
        _out().print(f"{row['namespace']}/{row['name']}:", markup=False)
        if not row["revisions"]:
            _out().print("  not deployed" if not row["deployed"] else "  no revisions")
            continue
        table = _table("  REVISION", "HASH", "CREATED", "COMMIT")
        for rev in row["revisions"]:
            mark = "*" if rev["revision"] == row["currentRevision"] else " "
            commit = (rev["commit"] or "-")[:12]
            table.add_row(f"{mark} {rev['revision']}", rev["hash"], rev["created"], commit)
        _out().print(table)
        if row.get("stableRevision") is not None:  # applier: external: the way back (docs/gitops.md)
            _out().print(f"  * current; stable (the last completed rollout): {row['stableRevision']}", markup=False)


def request_view(rows: Sequence[Mapping[str, Any]], *, fmt: str) -> None:
    if fmt == "json":
        emit_json({"variants": list(rows)})
        return
    for row in rows:
        _out().print(f"{row['namespace']}/{row['name']}: {row['message']}", markup=False)


# --- init --------------------------------------------------------------------------------


def init_view(done: Scaffolded, *, fmt: str) -> None:
    """The files written and the classes proposed; in text, the commands to run next."""
    env = done.environment
    namespace = done.namespace
    steps = [
        (f"kubectl create namespace {namespace}", "if it is not there yet"),
        (f"kubectl apply -f deploy/rbac/{env}.yaml", "the deployer and reviewer ServiceAccounts"),
        (f"dsroll render {env}", f"write rendered/{env}/ (commit it: CI checks it)"),
        (f"dsroll nodes {env}", "which class each node falls into"),
        (f"dsroll diff {env} --against live", "what a rollout would change"),
        (f'git add -A && git commit -m "dsroll: environment {env}"', ""),
        (f"dsroll rollout {env}", ""),
    ]
    if fmt == "json":
        emit_json(
            {
                "root": str(done.root),
                "environment": env,
                "files": [{"path": path, "result": result} for path, result in done.files],
                "classes": [c.to_json() for c in done.classes],
                "fromCluster": done.from_cluster,
                "next": [command for command, _ in steps],
            }
        )
        return
    for path, result in done.files:
        _out().print(f"{result:<12} {path}", markup=False)
    source = "from the cluster's nodes" if done.from_cluster else "examples: --from-cluster proposes your nodes' own"
    _out().print(f"\nhardware classes ({source}):", markup=False)
    for c in done.classes:
        counted = f"{c.nodes} node(s)" if done.from_cluster else "-"
        _out().print(f"  {c.name:<12} {counted:<10} {c.reason}", markup=False)
    width = max(len(command) for command, _ in steps)
    lines = [f"{command:<{width}}  # {why}" if why else command for command, why in steps]
    if done.root != Path("."):
        lines.insert(0, f"cd {done.root}")
    _out().print("\nnext:\n  " + "\n  ".join(lines), markup=False)
