#!/usr/bin/env python3
"""Pin every dependency pyproject.toml floors to exactly its floor, as a pip constraints file.

``make test`` installs dsroll with these constraints into a second venv and runs the
unit tests there, so a declared floor is one that works, not one that was once typed.
Runtime dependencies and the ``sandbox`` extra are pinned; the ``dev`` extra (test and
lint tools) and ``go`` (a toolchain, not a library) are left to the resolver, as are the
dependencies' own dependencies. A runtime dependency without a ``>=`` floor is an error.

Usage: python3 scripts/min-constraints.py [pyproject.toml] > constraints.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

FLOORED_EXTRAS = ("sandbox",)
_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*(?:[,;].*)?$")


def floors(pyproject: Path) -> list[str]:
    """``name==floor`` for every floored requirement, in file order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in FLOORED_EXTRAS:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    pins = []
    for requirement in requirements:
        match = _FLOOR.match(requirement)
        if not match:
            raise SystemExit(f"min-constraints: {requirement!r} declares no '>=' floor")
        pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "pyproject.toml"
    print("\n".join(floors(path)))


if __name__ == "__main__":
    main()
