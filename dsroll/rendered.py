"""The rendered folder on disk: write it, or tell how it drifted (``render --check``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dsroll.render import RenderResult


@dataclass(frozen=True)
class FileChange:
    path: str  # relative to the project root
    status: str  # written | unchanged | removed | would-write | would-remove
    workload: str | None = None
    cls: str | None = None

    @property
    def drift(self) -> bool:
        return self.status in ("would-write", "would-remove")


def sync(root: Path, result: RenderResult, *, check: bool) -> list[FileChange]:
    """Make ``renderedDir`` hold exactly the variants (or, with ``check``, say what differs)."""
    base = root / result.env.rendered_dir
    changes = []
    wanted = set()
    for variant in result.variants:
        target = base / variant.path
        wanted.add(target)
        rel = target.relative_to(root).as_posix()
        current = target.read_text() if target.is_file() else None
        if current == variant.text:
            status = "unchanged"
        elif check:
            status = "would-write"
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(variant.text)
            status = "written"
        changes.append(FileChange(rel, status, variant.workload, variant.cls))
    stale = sorted(p for p in base.rglob("*.yaml") if p not in wanted) if base.is_dir() else []
    for path in stale:
        if not check:
            path.unlink()
            if path.parent != base and not any(path.parent.iterdir()):
                path.parent.rmdir()
        changes.append(FileChange(path.relative_to(root).as_posix(), "would-remove" if check else "removed"))
    return changes
