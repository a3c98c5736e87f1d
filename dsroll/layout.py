"""Where rendered files may go, and how dsroll knows a file it wrote. Pure.

``renderedDir`` comes from an environment file that arrives in a pull request, and
``render`` writes and removes files in it. So the folder is held to lexical rules
before any file system call: relative, inside the project once normalised, and apart
from the folders the project keeps its own files in (environments, templates, git's).
"Apart" means neither folder is the other or inside it: a renderedDir that contains
``templates/`` is as dangerous as one inside it.

A file is dsroll's only if its first line is the header ``render_variant`` writes
(``# Rendered by dsroll from <template> for environment <env>, class <class>.``), and
only the environment it names may replace or remove it. Nothing else — a
kustomization.yaml, a README, another environment's manifest — is ever touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from dsroll.projectpath import OutsideProject, inside_project

ENVIRONMENTS = "environments"
TEMPLATES = "templates"
_ALWAYS_PROTECTED = {ENVIRONMENTS: "the environment files", TEMPLATES: "the templates", ".git": "git's own files"}
NAME_MAX = 255  # bytes in one file or folder name (Linux, macOS, Windows)
PATH_MAX = 1024  # bytes in a whole renderedDir: well under every system's limit with the files below it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Env and class names are DNS labels (no comma, dot or space), so the last match is the header's own.
_HEADER = re.compile(
    r"^# Rendered by dsroll from (?P<template>.+) for environment (?P<env>[^,\s]+), class (?P<cls>[^.\s]+)\.$"
)


def normalise(path: str) -> str:
    """``path`` as a clean relative POSIX path, or ValueError saying why it is not one.

    The lexical rule is the project's one (``projectpath``): ``..`` is resolved here, so
    the file system never walks through it (``a/..`` on disk leaves from wherever a
    symlinked ``a`` points). A folder dsroll writes into is held to a little more: no
    control character or backslash, and names the file system can hold.
    """
    if not path.strip():
        raise ValueError("is empty: name a folder inside the project, like rendered/<env>")
    if _CONTROL.search(path) or "\\" in path:
        raise ValueError(f"{path!r} has a control character or a backslash: use / between folder names")
    try:
        joined = inside_project(path)
    except OutsideProject as exc:
        raise ValueError(f"{path!r} {exc}: name a folder inside it, like rendered/<env>") from None
    long = next((p for p in joined.split("/") if len(p.encode("utf-8", "surrogatepass")) > NAME_MAX), None)
    if long is not None:
        raise ValueError(f"has a folder name of {len(long)} characters: file systems allow {NAME_MAX} bytes a name")
    if len(joined.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise ValueError(f"is {len(joined)} characters long: keep it under {PATH_MAX} bytes")
    return joined


def overlaps(a: str, b: str) -> bool:
    """One normalised folder is the other or inside it (compared case-insensitively, as macOS does)."""
    left, right = a.casefold().split("/"), b.casefold().split("/")
    shorter = min(len(left), len(right))
    return left[:shorter] == right[:shorter]


def protected_folders(env_file: str, templates: Iterable[str]) -> dict[str, str]:
    """Folders a renderedDir must stay apart from, each with what it holds (for the message)."""
    folders = dict(_ALWAYS_PROTECTED)
    for path, what in [(env_file, "this environment file"), *((t, f"template {t}") for t in templates)]:
        try:
            folder = normalise(str(PurePosixPath(path).parent))
        except ValueError:
            continue  # the project root (or a path that leaves it: refused where it is read)
        folders.setdefault(folder, what)
    return folders


def check_rendered_dir(value: str, protected: Mapping[str, str]) -> str:
    """The normalised renderedDir, or ValueError naming the rule it breaks."""
    folder = normalise(value)
    for other, what in protected.items():
        if overlaps(folder, other):
            relation = "is" if folder.casefold() == other.casefold() else "overlaps"
            raise ValueError(
                f"{value!r} {relation} {other}/, which holds {what}: render would write among them; "
                "use a folder of its own, like rendered/<env>"
            )
    return folder


def declared_rendered_dir(raw: Any) -> str | None:
    """The normalised renderedDir an environment file's parsed YAML declares (default
    ``rendered/<name>``), read from ``metadata.name`` and ``renderedDir`` alone; None if
    the document is not an environment file. ValueError if it cannot be told.
    """
    if not isinstance(raw, dict) or raw.get("kind") != "Environment":
        return None
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    given = raw.get("renderedDir")
    if given is None:
        if not isinstance(name, str) or not name:
            raise ValueError("metadata.name is missing")
        given = f"rendered/{name}"
    if not isinstance(given, str):
        raise ValueError("renderedDir is not a string")
    return normalise(given)


def written_for(first_line: str) -> str | None:
    """The environment a generated file's header names, or None if the line is no dsroll header."""
    found = _HEADER.match(first_line.rstrip("\r\n"))
    return found["env"] if found else None


def is_variant_path(rel: str) -> bool:
    """``<namespace>/<name>.yaml`` below renderedDir: the only place a variant is written."""
    parts = rel.split("/")
    return len(parts) == 2 and parts[1].endswith(".yaml") and not parts[1].startswith(".")
