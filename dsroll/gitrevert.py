"""``rollback --git-revert``: go back the GitOps way, with one commit the applier then applies.

Under ``rollout.applier: external`` a rollback written to the cluster would be undone by
the applier's next sync (Argo CD's self-heal, Flux's interval). The way back is git: one
commit that restores, as of the *stable commit* (the commit of the last render dsroll
conducted to completion, ``store.Stable``), exactly the files that determine this
environment's render — its environment file and the templates that render read — and
re-renders its ``renderedDir``. Refused (exit 2, naming the files) when:

- any of those files, or the rendered folder, has uncommitted changes (the commit would
  carry them, or lose them);
- restoring them would change another environment's render too (a template they share):
  that environment would roll back with it, which nobody asked for.

This module is the git adapter; what to restore (``restored_files``) and which commit
is stable (``newest``) are pure choices over what it reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import git

from dsroll import layout
from dsroll.errors import DsrollError, InputError
from dsroll.gitsource import FsSource, GitSource, Project
from dsroll.render import RenderResult, load_environment, render_environment
from dsroll.rendered import FileChange, sync


@dataclass(frozen=True)
class Overlay:
    """The working tree with some files replaced: how another environment would render
    after the revert, before anything is written."""

    base: FsSource
    files: Mapping[str, str]
    label: str = "working tree with the revert"

    def read_text(self, path: str) -> str:
        return self.files[path] if path in self.files else self.base.read_text(path)

    def exists(self, path: str) -> bool:
        return path in self.files or self.base.exists(path)

    def list_files(self, folder: str) -> list[str]:
        return self.base.list_files(folder)

    def confined(self, path: str) -> str | None:
        return path if path in self.files else self.base.confined(path)


@dataclass(frozen=True)
class Revert:
    """What ``--git-revert`` did: the new commit (None: nothing differed), from which stable
    commit, the files restored and the rendered files written or removed."""

    environment: str
    stable: str
    head: str
    commit: str | None
    restored: tuple[str, ...]
    rendered: tuple[FileChange, ...]
    pushed: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "stableCommit": self.stable,
            "revertedFrom": self.head,
            "commit": self.commit,
            "restored": list(self.restored),
            "rendered": [{"path": c.path, "status": c.status} for c in self.rendered if c.status != "unchanged"],
            "pushed": self.pushed,
        }


def newest(commits: Sequence[str], is_ancestor: Callable[[str, str], bool]) -> str:
    """The stable commit of several variants: the one the others are ancestors of (a later
    completed rollout of one workload leaves the others' render as it was). Refused when
    they are not on one line of history."""
    found = sorted(set(commits))
    for candidate in found:
        if all(other == candidate or is_ancestor(other, candidate) for other in found):
            return candidate
    raise InputError(
        f"the variants in scope were last completed from commits on different lines of history "
        f"({', '.join(c[:12] for c in found)}): narrow the scope with --workload/--class"
    )


def restored_files(old_inputs: Sequence[str], changed: Callable[[str], bool]) -> tuple[str, ...]:
    """The files the revert writes: what the stable render read, where it differs now."""
    return tuple(sorted(p for p in set(old_inputs) if changed(p)))


def _other_environments(project: Project, overlay: Overlay, namespace: str | None) -> list[tuple[str, list[str]]]:
    """(environment file, rendered files that would change) for every other environment
    whose render the restored files change."""
    base = overlay.base
    found = []
    for path in base.list_files(layout.ENVIRONMENTS):
        if path == project.env_path or not path.endswith((".yaml", ".yml")):
            continue
        try:
            before = render_environment(load_environment(base, path, namespace), base)
        except DsrollError:
            continue  # one that does not render now is no render the revert changes
        try:
            after = render_environment(load_environment(overlay, path, namespace), overlay)
        except DsrollError:
            found.append((path, ["(it would no longer render)"]))
            continue
        texts = {v.path: v.text for v in after.variants}
        changed = [v.path for v in before.variants if texts.pop(v.path, None) != v.text] + sorted(texts)
        if changed:
            found.append((path, changed))
    return found


def revert(
    project: Project,
    current: RenderResult,
    stable: str,
    namespace: str | None,
) -> Revert:
    """Make the revert commit in the local repository (or say there is nothing to revert)."""
    repo = project.repo
    if repo is None or repo.bare:
        raise InputError(f"{project.root} is not a git work tree: --git-revert makes a commit")
    head = project.head_commit() or ""
    env = current.env
    old: GitSource = project.at(stable)
    try:
        old_render = render_environment(load_environment(old, project.env_path, namespace), old)
    except DsrollError as exc:
        raise InputError(f"the stable commit {stable[:12]} does not render {env.file}: {exc}") from None
    files = {p: old.read_text(p) for p in old_render.inputs}
    work = FsSource(project.root)

    def differs(path: str) -> bool:
        return not work.exists(path) or work.read_text(path) != files[path]

    restored = restored_files(old_render.inputs, differs)
    dirty = project.uncommitted([*old_render.inputs, *current.inputs, env.rendered_dir])
    if dirty:
        raise InputError(
            f"--git-revert: uncommitted changes to what {env.file} renders from: {', '.join(dirty[:8])}: "
            "commit or stash them first; nothing was written"
        )
    overlay = Overlay(work, {p: files[p] for p in restored})
    others = _other_environments(project, overlay, namespace)
    if others:
        shown = "; ".join(f"{path} ({', '.join(changed[:3])})" for path, changed in others)
        raise InputError(
            f"--git-revert: restoring {', '.join(restored)} as of {stable[:12]} would change the render of "
            f"another environment too: {shown}; revert by hand (docs/gitops.md), nothing was written"
        )
    for path in restored:
        target = project.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_blob_bytes(old, path))
    after = render_environment(load_environment(work, project.env_path, namespace), work)
    synced = sync(project.root, after, check=False)
    touched = [*restored, *(c.path for c in synced.changes if c.status == "written")]
    removed = [c.path for c in synced.changes if c.status == "removed"]
    if touched:
        repo.index.add(touched)
    if removed:
        repo.index.remove(removed)
    if not repo.index.diff("HEAD"):
        return Revert(env.name, stable, head, None, tuple(restored), synced.changes)
    message = (
        f"Revert {env.name} to {stable[:12]} (dsroll rollback --git-revert)\n\n"
        f"Restores {', '.join(restored) or 'nothing'} as of {stable} and re-renders {env.rendered_dir}:\n"
        f"{env.file} renders as it did at the last rollout dsroll conducted to completion.\n"
        f"Reverted from {head}.\n"
    )
    made = repo.index.commit(message)
    return Revert(env.name, stable, head, made.hexsha, tuple(restored), synced.changes)


def _blob_bytes(source: GitSource, path: str) -> bytes:
    """A file exactly as committed (its bytes, not its decoded text)."""
    blob = source.commit.tree / path
    return bytes(blob.data_stream.read())


def push(project: Project) -> str:
    """Push the current branch to its upstream (or origin); where it went."""
    repo = project.repo
    assert repo is not None
    try:
        branch = repo.active_branch
    except TypeError:
        raise DsrollError("--push: HEAD is detached; the revert commit is made, push it yourself") from None
    tracking = branch.tracking_branch()
    remote = tracking.remote_name if tracking is not None else "origin"
    target = tracking.remote_head if tracking is not None else branch.name
    try:
        repo.git.push(remote, f"{branch.name}:{target}")
    except git.GitCommandError as exc:
        detail = (exc.stderr or str(exc)).strip().splitlines()[-1:] or [""]
        raise DsrollError(
            f"--push to {remote} failed ({detail[0].strip()}): the revert commit is made, push it yourself"
        ) from None
    return f"{remote}/{target}"
