"""The pure modules load no client, git, template engine or terminal library.

Decisions (planning, the class algebra, orphan placement, health verdicts, the rollout
state) must be importable and testable without a cluster, a repository or a template:
the adapters are passed in, and type hints name them under ``TYPE_CHECKING`` only. A
fresh interpreter is the only honest check, since this test process has loaded them all.
"""

from __future__ import annotations

import json
import subprocess
import sys

PURE = (
    "dsroll.plan",
    "dsroll.classes",
    "dsroll.orphans",
    "dsroll.rollout.health",
    "dsroll.rollout.causes",
    "dsroll.rollout.placement",
    "dsroll.rollout.state",
    "dsroll.rollout.decide",
    "dsroll.rollout.view",
    "dsroll.rollout.restart",
    "dsroll.rollout.revisions",
    "dsroll.diff",
    "dsroll.manifest",
    "dsroll.names",
    "dsroll.layout",
    "dsroll.projectpath",
    "dsroll.labels",
    "dsroll.masking",
    "dsroll.permissions",
    "dsroll.namespaces",
    "dsroll.scaffold",
    "dsroll.sandbox.kwoklog",
)
ADAPTERS = ("kubernetes", "git", "jinja2", "rich", "urllib3")


def test_pure_modules_import_no_adapter() -> None:
    script = (
        f"import {', '.join(PURE)}; import sys, json; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {set(ADAPTERS)!r})))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_the_command_line_loads_the_kubernetes_client_only_to_connect() -> None:
    """Start-up: `render`, `diff --against git`, `schema` and `--help` need no cluster, and
    the kubernetes package is a third of the CLI's import time; it loads in ``connect``."""
    script = "import dsroll.cli, sys; print('kubernetes' in sys.modules, 'dsroll.kube.client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
    script = "import dsroll.kube, sys; dsroll.kube.Kube; print('dsroll.kube.client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True"]


def test_rich_loads_only_when_something_is_drawn_with_it() -> None:
    """Start-up: rich is ~25 ms of imports. The command line, a rollout's reporter and the
    lines ``output`` writes off a terminal, and JSON lines, work without it (it is made
    unimportable here: an older typer imports it on its own); ``output.err`` makes its
    Console on first use."""
    script = (
        "import sys; sys.modules['rich'] = None; "
        "import dsroll.cli; from dsroll.rollout.reporter import Reporter; from dsroll import output; "
        "Reporter(None, json_lines=True, tty=False).emit('start', 'ns/v', 'started'); "
        "output.info('Using context dev'); output.warn('careful'); output.error('failed')"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["event"] == "start"
    assert result.stderr == "ns/v: started\nUsing context dev\nwarning: careful\nerror: failed\n"
    script = "from dsroll import output; console = output.err; print(type(console).__name__, console is output.err)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["Console", "True"]
