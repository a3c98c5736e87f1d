"""Text and JSON views of results. Colour and tables only on a TTY; JSON is stable.

The JSON shapes are documented in README.md ("JSON output"); change them only
together with that section.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dsroll.diff import Change, DiffReport
from dsroll.nodes import NodeReport
from dsroll.render import RenderResult
from dsroll.rendered import FileChange

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def info(message: str) -> None:
    """Progress and context lines: stderr, so stdout stays clean for JSON and diffs."""
    err.print(message, style="dim", markup=False)


def warn(message: str) -> None:
    err.print(Text("warning: ", style="yellow") + Text(message))


def error(message: str) -> None:
    err.print(Text("error: ", style="bold red") + Text(message))


def _table(*headers: str) -> Table:
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
            out.print(f"{result.env.rendered_dir} is up to date ({len(result.variants)} variants)")
        for change in drift:
            verb = "differs from the render" if change.status == "would-write" else "belongs to no variant"
            out.print(Text(f"{change.status:<13}", style="yellow") + Text(f"{change.path}: {verb}"))
        if drift:
            out.print(f"{len(drift)} file(s) drifted: run `dsroll render {result.env.name}` and commit the result")
        return
    style = {"written": "green", "removed": "red", "unchanged": "dim"}
    for change in changes:
        out.print(Text(f"{change.status:<10}", style=style[change.status]) + Text(change.path))
    counts = {s: sum(1 for c in changes if c.status == s) for s in ("written", "unchanged", "removed")}
    out.print(
        f"{len(result.variants)} variants of {result.env.name} in {result.env.rendered_dir}: "
        f"{counts['written']} written, {counts['unchanged']} unchanged, {counts['removed']} removed"
    )


def _diff_text(text: str) -> Text:
    styled = Text()
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
        out.print(Text(f"{v.namespace}/{v.name}: ", style="bold") + Text(v.change.describe + extra))
        if v.note:
            out.print(Text(f"  note: {v.note}", style="yellow"))
        out.print(_diff_text(v.diff), end="")
    s = report.summary()
    ignored = f", {s['ignoredDifferences']} ignored difference(s)" if s["ignoredDifferences"] else ""
    out.print(
        f"{len(report.variants)} variants against {report.against}: {s['added']} added, {s['removed']} removed, "
        f"{s['changed']} changed, {s['unchanged']} unchanged{ignored}"
    )


def nodes_report(report: NodeReport, *, fmt: str) -> None:
    if fmt == "json":
        emit_json(report.to_json())
        return
    table = _table("NODE", "ZONE", "CLASS", "MATCHED")
    for node in report.nodes:
        table.add_row(node.name, node.zone or "-", node.winner or "<none>", ",".join(node.matched) or "-")
    out.print(table)
    for workload, names in report.uncovered.items():
        classes = ", ".join(report.workload_classes[workload])
        if names:
            out.print(
                f"workload {workload} (classes {classes}): no variant on {len(names)} node(s): {', '.join(names)}"
            )
        else:
            out.print(f"workload {workload} (classes {classes}): every node runs exactly one variant")
