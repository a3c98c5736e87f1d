"""Where project files come from: the working tree, or a git tree at some ref.

Rendering reads the environment and templates through a ``Source`` so the same code
renders the working tree, the tree at any commit (``rollback --to-git``) or a bare
clone, reading git objects and never checking anything out.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

import git

from dsroll.errors import InputError
from dsroll.projectpath import OutsideProject, inside_project

_SYMLINK_MODE = 0o120000

MAX_FILE_BYTES = 2**20
"""The largest environment file, template or rendered manifest dsroll reads: hand-written
files are a few KiB, and a DaemonSet larger than this is refused by most API servers."""

_FOREIGN_BOMS = (  # UTF-32 LE first: its mark begins with UTF-16 LE's
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def check_size(size: int, path: str) -> None:
    if size > MAX_FILE_BYTES:
        raise InputError(f"larger than {MAX_FILE_BYTES // 2**20} MiB, the limit for a file dsroll reads", path)


def decode(data: bytes, path: str) -> str:
    """The text of a project file, which must be UTF-8; a UTF-8 byte-order mark is dropped, line ends are "\\n".

    Files arrive in pull requests, so anything else is bad input with its line, never a
    traceback: YAML and Jinja are then only ever given text they can report on.
    """
    check_size(len(data), path)
    for bom, encoding in _FOREIGN_BOMS:
        if data.startswith(bom):
            raise InputError(f"encoded as {encoding} (byte-order mark {bom.hex()}): save it as UTF-8", path, 1)
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at line {line})", path, line) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise InputError("contains a NUL byte: a text file has none (UTF-16 without a byte-order mark?)", path, line)
    return text.replace("\r\n", "\n").replace("\r", "\n")  # the same text from a Windows checkout


class Source(Protocol):
    """Read-only access to the project's files by root-relative POSIX path."""

    label: str

    def read_text(self, path: str) -> str: ...

    def exists(self, path: str) -> bool: ...

    def list_files(self, folder: str) -> list[str]: ...

    def confined(self, path: str) -> str | None:
        """``path`` normalised if a file is there, None if nothing is; OutsideProject if it
        leaves the project, lexically or through a symlink."""
        ...


@dataclass(frozen=True)
class FsSource:
    """The project as it is on disk."""

    root: Path
    label: str = "working tree"

    def read_text(self, path: str) -> str:
        try:
            with (self.root / path).open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)  # no more: the size alone refuses it
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        return decode(data, path)

    def exists(self, path: str) -> bool:
        try:
            return (self.root / path).is_file()
        except OSError:  # a name the file system cannot hold (too long, …) names no file
            return False

    def confined(self, path: str) -> str | None:
        """Symlinks are followed only while they stay under the root (the file and every folder)."""
        rel = inside_project(path)
        root = self.root.resolve()
        try:
            real = (root / rel).resolve()
            if not real.is_relative_to(root):
                raise OutsideProject("is outside the project (a symlink on its way resolves outside it)")
            return rel if real.is_file() else None
        except OSError:  # a name too long for the file system, a loop of links, no permission
            return None

    def list_files(self, folder: str) -> list[str]:
        base = self.root / folder
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())


@dataclass(frozen=True)
class GitSource:
    """The project as committed at ``ref``, read from git objects (works on bare clones)."""

    repo: git.Repo
    ref: str
    commit: git.Commit = field(init=False)
    label: str = field(init=False)

    def __post_init__(self) -> None:
        try:
            commit = self.repo.commit(self.ref)
        except (git.BadName, ValueError, git.GitCommandError):
            raise InputError(f"git ref {self.ref!r} not found in {self.repo.git_dir}") from None
        object.__setattr__(self, "commit", commit)
        object.__setattr__(self, "label", f"{self.ref} ({commit.hexsha[:12]})")

    def _blob(self, path: str) -> git.Blob | None:
        try:
            obj = self.commit.tree / path
        except KeyError:
            return None
        return obj if isinstance(obj, git.Blob) else None

    def read_text(self, path: str) -> str:
        blob = self._blob(path)
        if blob is None:
            raise InputError(f"{path} does not exist at git {self.label}")
        check_size(blob.size, path)  # before reading it
        return decode(blob.data_stream.read(), path)

    def exists(self, path: str) -> bool:
        return self._blob(path) is not None

    def confined(self, path: str) -> str | None:
        """A symlink in git objects is never followed: resolving it would mean trusting its text."""
        rel = inside_project(path)
        obj: object = self.commit.tree
        walked: list[str] = []
        for part in rel.split("/"):
            if not isinstance(obj, git.Tree):
                return None
            try:
                obj = obj / part
            except KeyError:
                return None
            walked.append(part)
            if isinstance(obj, git.Blob) and obj.mode == _SYMLINK_MODE:
                link = "/".join(walked)
                where = "is" if link == rel else f"passes through {link!r}, which is"
                raise OutsideProject(f"{where} a symlink at git {self.label}, and symlinks in git are never followed")
        return rel if isinstance(obj, git.Blob) else None

    def list_files(self, folder: str) -> list[str]:
        try:
            tree = self.commit.tree / folder if folder not in ("", ".") else self.commit.tree
        except KeyError:
            return []
        if not isinstance(tree, git.Tree):
            return []
        return sorted(item.path for item in tree.traverse() if isinstance(item, git.Blob))


@dataclass(frozen=True)
class Project:
    """The project root, its git repository if any, and the environment file in it."""

    root: Path
    repo: git.Repo | None
    env_path: str  # relative to root, POSIX
    source: Source

    def head_commit(self) -> str | None:
        """The commit a rollout records; None outside git or before the first commit."""
        if self.repo is None:
            return None
        try:
            return self.repo.head.commit.hexsha
        except ValueError:
            return None

    def uncommitted(self, paths: Sequence[str]) -> list[str]:
        """Which of ``paths`` (files or folders, root-relative) have uncommitted changes, untracked
        files included: what a rollout would deploy from them is not in git. Files elsewhere
        in the work tree (a CI job's output, a saved plan) do not count."""
        if self.repo is None or self.repo.bare or not paths:
            return []
        out = self.repo.git.status("--porcelain", "-z", "--untracked-files=all", "--", *paths)
        entries = [e for e in out.split("\0") if e]
        changed, skip = [], False
        for entry in entries:
            if skip:  # the source path of a rename or copy
                skip = False
                continue
            changed.append(entry[3:])
            skip = entry[0] in "RC"
        return sorted(set(changed))

    def at(self, ref: str) -> GitSource:
        if self.repo is None:
            raise InputError(f"{self.root} is not in a git repository: cannot read git ref {ref!r}")
        return GitSource(self.repo, ref)


def _open_repo(start: Path) -> git.Repo | None:
    try:
        return git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def locate(env: str, cwd: Path | None = None) -> Project:
    """Resolve ENV as DESIGN.md says: a name under environments/, or a path to a file.

    The root is the git work tree's top (or, in a bare clone, the project as committed at
    HEAD), else the current directory.
    """
    cwd = (cwd or Path.cwd()).resolve()
    repo = _open_repo(cwd)
    if repo is not None and repo.bare:
        source: Source = GitSource(repo, "HEAD")
        root = Path(repo.git_dir)
        candidate = env if env.endswith((".yaml", ".yml")) else f"environments/{env}.yaml"
        if not source.exists(candidate):
            raise InputError(f"environment {env!r} not found: no {candidate} at HEAD of bare repository {root}")
        return Project(root, repo, candidate, source)
    root = Path(repo.working_tree_dir).resolve() if repo is not None and repo.working_tree_dir else cwd
    as_path = Path(env)
    if env.endswith((".yaml", ".yml")) or os.sep in env:
        path = (cwd / as_path).resolve()
        if not path.is_file():
            raise InputError(f"environment file {env} not found")
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            raise InputError(f"environment file {env} is outside the project root {root}") from None
    else:
        rel = PurePosixPath("environments", f"{env}.yaml").as_posix()
        if not (root / rel).is_file():
            known = sorted(p.stem for p in (root / "environments").glob("*.yaml"))
            hint = f" (known: {', '.join(known)})" if known else ""
            raise InputError(f"environment {env!r} not found: no {rel} under {root}{hint}")
    return Project(root, repo, rel, FsSource(root))
