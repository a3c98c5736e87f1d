"""The rendered folder on disk: write it, or tell how it drifted (``render --check``).

The folder belongs to the user as much as to dsroll: appliers (``kubectl apply -f``,
Argo CD) apply every file in it, so people keep a kustomization.yaml or a README there,
and environment files from pull requests choose where it is. Hence:

- the folder is checked before anything is written: the lexical rules (``layout``,
  applied when the environment file is read), no other environment file writing to it
  or inside it, and no symbolic link on the way to it or to any file written;
- a file is replaced or removed only if dsroll wrote it for this environment (its
  header says so); anything else is left alone with a warning, and is no drift;
- each file is written to a temporary file beside it and renamed over the old one, so
  an interrupted render leaves the old manifest or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dsroll import layout, yamlio
from dsroll.config import Environment
from dsroll.errors import InputError
from dsroll.gitsource import FsSource, Source
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


@dataclass(frozen=True)
class Synced:
    """What ``sync`` did (or would do) per file, and the files it left alone, as warnings."""

    changes: tuple[FileChange, ...]
    warnings: tuple[str, ...]


def check_neighbours(env: Environment, source: Source) -> list[str]:
    """Refuse a renderedDir that another environment file's is, contains or lies inside.

    Two environments in one folder would each see the other's files as their own to
    replace; one nested in another would write among its files. Only ``metadata.name``
    and ``renderedDir`` of the others are read, so an environment file that is broken in
    any other way does not block this one; one that cannot be read at all is a warning.
    """
    warnings = []
    for path in source.list_files(layout.ENVIRONMENTS):
        if path == env.file or not path.endswith((".yaml", ".yml")):
            continue
        try:
            other = layout.declared_rendered_dir(yamlio.load(source.read_text(path), path))
        except InputError as exc:
            warnings.append(f"{exc}: renderedDir of {env.file} not checked against it")
            continue
        except ValueError as exc:
            warnings.append(f"{path}: {exc}: renderedDir of {env.file} not checked against it")
            continue
        if other is None or not layout.overlaps(env.rendered_dir, other):
            continue
        if other.casefold() == env.rendered_dir.casefold():
            relation = f"is also the renderedDir of {path}"
        elif len(other) > len(env.rendered_dir):
            relation = f"contains {other}, the renderedDir of {path}"
        else:
            relation = f"lies inside {other}, the renderedDir of {path}"
        raise InputError(
            f"renderedDir {env.rendered_dir} {relation}: environments need folders of their own",
            env.file,
            env.rendered_dir_line,
        )
    return warnings


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _check_folder(root: Path, env: Environment) -> None:
    """No symbolic link, and nothing but folders, from the project root down to renderedDir."""
    here = root
    for part in PurePosixPath(env.rendered_dir).parts:
        here = here / part
        if here.is_symlink():
            raise InputError(
                f"renderedDir {env.rendered_dir}: {_rel(root, here)} is a symbolic link; "
                "dsroll writes only into real folders of the project",
                env.file,
                env.rendered_dir_line,
            )
        if not here.exists():
            return
        if not here.is_dir():
            raise InputError(
                f"renderedDir {env.rendered_dir}: {_rel(root, here)} is a file, not a folder",
                env.file,
                env.rendered_dir_line,
            )


def _first_line(path: Path) -> str:
    """The first line of a regular file, read without following a symbolic link."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.readline(4096).decode("utf-8", errors="replace")


def _owner(path: Path) -> str | None:
    """The environment whose render wrote ``path``; None if dsroll did not write it (or
    it is a link, a folder or unreadable: nothing dsroll would touch)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        return layout.written_for(_first_line(path))
    except OSError:
        return None


def _check_target(root: Path, env: Environment, target: Path) -> str | None:
    """Refuse a variant's file that is a link, sits below one, or is not dsroll's to replace.

    Returns its current text (None: not there yet).
    """
    for here in (target.parent, target):
        if here.is_symlink():
            raise InputError(
                f"{_rel(root, here)} is a symbolic link: dsroll never writes through one; remove it and render again"
            )
    if target.parent.exists() and not target.parent.is_dir():
        raise InputError(f"{_rel(root, target.parent)} is a file where render needs a folder: move it away")
    if not target.exists():
        return None
    owner = _owner(target)
    if owner != env.name:
        whose = "was not written by dsroll" if owner is None else f"was written by dsroll for environment {owner}"
        raise InputError(
            f"{_rel(root, target)} {whose}, and variant {target.stem} of {env.name} would replace it: "
            "move it away or delete it"
        )
    try:
        return target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""  # ours, but not what we would write: rewritten


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``target``, then rename it over ``target``.

    A rename replaces the name itself (a symbolic link there is replaced, not followed)
    and is atomic: readers and interrupted runs see the old file or the new one.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the manifest from other readers
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _scan(root: Path, base: Path, env: Environment, wanted: set[Path]) -> tuple[list[Path], list[str]]:
    """Files of this environment's render that no variant writes any more, and warnings for
    everything else in the folder, which is left alone."""
    stale: list[Path] = []
    warnings: list[str] = []
    if not base.is_dir():
        return stale, warnings
    for folder, dirs, files in os.walk(base):  # does not descend into linked folders
        here = Path(folder)
        for name in sorted(dirs):
            if (here / name).is_symlink():
                warnings.append(f"{_rel(root, here / name)} is a symbolic link: left alone")
        dirs.sort()
        for name in sorted(files):
            path = here / name
            if path in wanted:
                continue
            rel = _rel(root, path)
            if path.is_symlink():
                warnings.append(f"{rel} is a symbolic link: left alone")
                continue
            owner = _owner(path)
            if owner == env.name and layout.is_variant_path(_rel(base, path)):
                stale.append(path)
            elif owner == env.name:
                warnings.append(f"{rel} was written by dsroll, but is not where a variant goes: left alone")
            elif owner is not None:
                warnings.append(f"{rel} was written by dsroll for environment {owner}: left alone")
            else:
                warnings.append(f"{rel} was not written by dsroll: left alone")
    return stale, warnings


def sync(root: Path, result: RenderResult, *, check: bool, source: Source | None = None) -> Synced:
    """Make ``renderedDir`` hold exactly the variants (or, with ``check``, say what differs).

    Every target is checked before the first file is written, so a refusal writes
    nothing. ``source`` lists the other environment files (default: the working tree).
    """
    try:
        return _sync(root, result, check=check, source=source)
    except OSError as exc:  # a name the file system refuses, a full disk, no permission
        where = Path(exc.filename) if exc.filename else root / result.env.rendered_dir
        shown = _rel(root, where) if where.is_relative_to(root) else str(where)
        raise InputError(f"cannot write {shown}: {exc.strerror or exc}", result.env.file) from None


def _sync(root: Path, result: RenderResult, *, check: bool, source: Source | None) -> Synced:
    env = result.env
    warnings = check_neighbours(env, source or FsSource(root))
    _check_folder(root, env)
    base = root / env.rendered_dir
    current = {base / v.path: _check_target(root, env, base / v.path) for v in result.variants}
    stale, foreign = _scan(root, base, env, set(current))
    changes = []
    for variant in result.variants:
        target = base / variant.path
        if current[target] == variant.text:
            status = "unchanged"
        elif check:
            status = "would-write"
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, variant.text)
            status = "written"
        changes.append(FileChange(_rel(root, target), status, variant.workload, variant.cls))
    for path in stale:
        if not check:
            path.unlink()
            with contextlib.suppress(OSError):  # only an empty folder goes, and never renderedDir itself
                if path.parent != base and not path.parent.is_symlink():
                    path.parent.rmdir()
        changes.append(FileChange(_rel(root, path), "would-remove" if check else "removed"))
    return Synced(tuple(changes), (*warnings, *foreign))
