"""The one rule for paths an environment file or a template names: they stay in the project.

Templates and environment files arrive in pull requests and are rendered in CI, often
with cluster credentials, so a path they name must never reach a file outside the
project (``/etc/passwd``, ``../../secrets``). The rule has two halves:

- lexical, here and pure: a project path is relative, POSIX, and its ``..`` never climbs
  above the project root; it is returned normalised (``templates/./a/../b.j2`` becomes
  ``templates/b.j2``) so every later lookup and message uses one spelling;
- physical, in each ``Source``: on disk a symlink (the file or any folder above it) may
  not resolve outside the root; in git objects a symlink is never followed at all.
"""

from __future__ import annotations

from pathlib import PurePosixPath


class OutsideProject(ValueError):
    """A path leaves the project. The message completes "template '<path>' …" and ends
    where the caller adds why that matters in its own terms."""


def inside_project(path: str) -> str:
    """``path`` normalised as a root-relative POSIX path, or OutsideProject if it leaves the root."""
    if not path or "\0" in path:
        raise OutsideProject("is not a file path")
    if _absolute(path):
        raise OutsideProject("is outside the project (an absolute path)")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise OutsideProject("is outside the project (its '..' climbs above the project root)")
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        raise OutsideProject("is the project root itself")
    return "/".join(parts)


def beside(folder: str, name: str) -> str:
    """``name`` looked up from ``folder`` (a project path, "" for the root), normalised.

    An absolute name is refused rather than re-rooted under ``folder``; a ``..`` in it may
    climb out of ``folder`` but not out of the project.
    """
    if _absolute(name):
        return inside_project(name)  # raises, naming the absolute path
    return inside_project(f"{folder}/{name}" if folder else name)


def _absolute(path: str) -> bool:
    """``/x``, ``\\x`` and ``C:/x``: absolute here or on Windows, never a project path."""
    drive = len(path) >= 2 and path[1] == ":" and path[0].isalpha()
    return path.startswith(("/", "\\")) or PurePosixPath(path).is_absolute() or drive
