"""Fuzzing the input boundary: mutated environment files and templates through the real CLI.

Environment files and templates arrive in pull requests and are rendered in CI, so for
any mutation of the examples the commands must answer as documented: exit 0, 1 or 2
(2 with one line on stderr), no traceback, within seconds and bounded memory, writing
only inside the rendered folder and removing nothing they did not write.

Each case copies a pristine project (a git repository with the examples rendered and
committed, a hand-written ``rendered/<env>/NOTES.txt`` and a file beside the project),
mutates it, and runs ``render``, ``render --check`` and ``diff --against git`` in-process.
An audit hook watches every file the commands open for writing, remove or create, every
file they read outside the project and Python's installation, and every process they
start other than git; it also refuses those acts, so a defect found here cannot reach
the rest of the machine. Seeds are fixed: the same cases run every time.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dsroll.cli import app

REPO = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "prod")
TEMPLATES = sorted(p.name for p in (REPO / "templates").glob("*.j2"))
DOCUMENTED_EXITS = {0, 1, 2}  # 70 (internal error) counts as a failure: it is a bug
CASE_SECONDS = 5.0  # a case using more CPU seconds than this fails
HARD_SECONDS = 20  # a case still running after this many seconds of wall time is stopped
MEMORY_HEADROOM = 1 << 30  # address space a case may add
# No shrinking: a fixed seed gives the same failing case every run, and shrinking one
# slow case would cost minutes.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
runner = CliRunner()


# --- The project every case starts from -------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository with the examples, rendered and committed, and the canaries."""
    base = tmp_path_factory.mktemp("fuzz-pristine")
    root = base / "project"
    for folder in ("environments", "templates"):
        shutil.copytree(REPO / folder, root / folder)
    repo = git.Repo.init(root)
    with contextlib.chdir(root):
        for env in ENVIRONMENTS:
            assert runner.invoke(app, ["render", env]).exit_code == 0
    repo.git.add(all=True)
    repo.git.commit("-q", "-m", "examples", "--author", "fuzz <fuzz@example.com>")
    for env in ENVIRONMENTS:
        (root / f"rendered/{env}/NOTES.txt").write_text("written by a person, not by dsroll\n")
    (base / "outside.txt").write_text("beside the project: never touched\n")
    return base


@contextlib.contextmanager
def case_copy(pristine: Path) -> Iterator[Path]:
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(_tempdir()))
        shutil.copytree(pristine, folder, dirs_exist_ok=True, symlinks=True)
        yield folder


@contextlib.contextmanager
def _tempdir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dsroll-fuzz-") as name:
        yield name


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


# --- Watching what a command does ----------------------------------------------------------


@dataclass
class Watch:
    """What the audit hook allows while a case runs, and what it saw."""

    project: Path
    writable: list[Path]
    seen: list[str] = field(default_factory=list)


_WATCH: list[Watch] = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PYTHON_DIRS = tuple(
    str(Path(p).resolve())
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values(), str(REPO / "dsroll")}
)
_MUTATING = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.symlink", "os.link", "os.truncate", "os.chmod"}
_PROCESSES = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn"}


def _inside(path: str, folders: list[Path]) -> bool:
    return any(path == str(f) or path.startswith(str(f) + os.sep) for f in folders)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _WATCH:
        return
    watch = _WATCH[-1]
    if event == "open":
        target, mode, flags = args
        if not isinstance(target, str | bytes) or str(target).startswith("/dev/null"):
            return
        path = os.path.realpath(os.fsdecode(target))
        writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _WRITE_FLAGS)
        if writing and not _inside(path, watch.writable):
            _refuse(watch, f"opened for writing outside the rendered folder: {path}")
        if not writing and not _inside(path, [watch.project]) and not path.startswith(_PYTHON_DIRS):
            _refuse(watch, f"read outside the project: {path}")
    elif event in _MUTATING:
        for target in args[:2]:
            if isinstance(target, str | bytes):
                path = os.path.realpath(os.fsdecode(target))
                if not _inside(path, watch.writable):
                    _refuse(watch, f"{event} outside the rendered folder: {path}")
    elif event in _PROCESSES:
        _refuse(watch, f"{event}: {args[0]!r}")
    elif event == "subprocess.Popen":
        program = os.path.basename(os.fsdecode(args[0])) if isinstance(args[0], str | bytes) else ""
        argv = args[1] if isinstance(args[1], list | tuple) else [args[1]]
        if program != "git" and not (argv and os.path.basename(str(argv[0])) == "git"):
            _refuse(watch, f"started a process: {argv!r}")


def _refuse(watch: Watch, what: str) -> None:
    watch.seen.append(what)
    raise PermissionError(f"refused by the fuzz harness: {what}")


sys.addaudithook(_audit)


class CaseTimeout(BaseException):
    """Stops a runaway case; a BaseException so no ``except Exception`` in dsroll swallows it."""


def _alarm(_signum: int, _frame: Any) -> None:
    raise CaseTimeout


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


# --- Running a case ----------------------------------------------------------------------


FIGURES: dict[str, Counter[str]] = {}
TIMES: dict[str, list[float]] = {}


@dataclass(frozen=True)
class Outcome:
    command: str
    exit_code: int
    stderr: str
    output: str
    exception: BaseException | None


def writable_folders(project: Path, env: str) -> list[Path]:
    """``rendered/`` and the renderedDir the (mutated) file names, if that is a folder of outputs."""
    folders = [project / "rendered"]
    try:
        named = yaml.safe_load((project / f"environments/{env}.yaml").read_bytes()).get("renderedDir")
    except Exception:
        named = None
    protected = ("/", "environments", "templates", ".git")
    if isinstance(named, str) and named.isprintable() and not named.startswith(protected):
        try:
            target = Path(os.path.realpath(project / named))
        except (UnicodeError, ValueError, OSError):  # not a path this file system can hold
            return [Path(os.path.realpath(project / "rendered"))]
        if _inside(str(target), [project]) and target != project and ".." not in Path(named).parts:
            folders.append(target)
    return [Path(os.path.realpath(f)) for f in folders]


def run_case(folder: Path, env: str, test: str, commands: list[list[str]]) -> list[Outcome]:
    """Run ``commands`` one after the other in the project in ``folder``; check every property."""
    project = Path(os.path.realpath(folder / "project"))
    notes = project / f"rendered/{env}/NOTES.txt"
    watch = Watch(project, writable_folders(project, env))
    before = snapshot(folder)
    outcomes = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    started = time.process_time()  # CPU seconds: other work on the machine does not inflate them
    try:
        limit = _address_space() + MEMORY_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
        signal.setitimer(signal.ITIMER_REAL, HARD_SECONDS)
        with contextlib.chdir(project):
            for args in commands:
                _WATCH.append(watch)
                try:
                    result = runner.invoke(app, args)
                finally:
                    _WATCH.pop()
                command = " ".join(args[:1] + args[2:])
                outcomes.append(Outcome(command, result.exit_code, result.stderr, result.output, result.exception))
                if result.exit_code == 2:
                    break  # refused: the other commands read the same file
    except CaseTimeout:
        pytest.fail(f"{test}: still running after {HARD_SECONDS} s: {commands}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    elapsed = time.process_time() - started
    TIMES.setdefault(test, []).append(elapsed)
    for outcome in outcomes:
        FIGURES.setdefault(test, Counter())[f"{outcome.command} → {outcome.exit_code}"] += 1
    where = f"{test}: {[o.command for o in outcomes]}"
    assert not watch.seen, f"{where}: {watch.seen}"
    for o in outcomes:
        assert o.exception is None or isinstance(o.exception, SystemExit), f"{where}: uncaught {o.exception!r}"
        assert o.exit_code in DOCUMENTED_EXITS, f"{where}: exit {o.exit_code}: {o.output[-500:]}"
        assert "Traceback" not in o.output, f"{where}: {o.output[-2000:]}"
        if o.exit_code == 2:
            lines = o.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{where}: {o.stderr[-1000:]}"
    assert elapsed < CASE_SECONDS, f"{where}: took {elapsed:.1f} s"
    after = snapshot(folder)
    changed = {
        path
        for path in before.keys() | after.keys()
        if before.get(path) != after.get(path) and not _inside(str(project.parent / path), watch.writable)
    }
    assert not changed, f"{where}: changed outside the rendered folder: {sorted(changed)}"
    assert notes.read_bytes() == before[notes.relative_to(folder).as_posix()][0], f"{where}: NOTES.txt changed"
    if len(outcomes) > 1 and outcomes[0].exit_code == 0 and outcomes[1].command.endswith("--check"):
        assert outcomes[1].exit_code == 0, f"{where}: a fresh render is not up to date: {outcomes[1].output[-500:]}"
    return outcomes


class _Figures:
    """Prints how the cases ended, per test and command, in pytest's summary (shown even when captured)."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not FIGURES:
            return
        terminalreporter.section("fuzz figures")
        for test, counts in FIGURES.items():
            times = TIMES.get(test, [0.0])
            terminalreporter.write_line(
                f"{test}: {len(times)} cases in {sum(times):.1f} s (slowest {max(times):.2f} s); "
                + ", ".join(f"{key}: {n}" for key, n in sorted(counts.items()))
            )


@pytest.fixture(scope="module", autouse=True)
def figures(request: pytest.FixtureRequest) -> None:
    if not request.config.pluginmanager.has_plugin("dsroll-fuzz-figures"):
        request.config.pluginmanager.register(_Figures(), "dsroll-fuzz-figures")


def render_commands(env: str, git_diff: bool = False) -> list[list[str]]:
    commands = [["render", env], ["render", env, "--check"]]
    return [*commands, ["diff", env, "--against", "git"]] if git_diff else commands


# --- Mutations ----------------------------------------------------------------------------

INVALID_UTF8 = [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"]
BOMS = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"]
YAML_BITS = [b": ", b"\n", b"- ", b"{", b"}", b"[", b"]", b"&a ", b"*a", b"<<: *a", b"---\n", b"!!binary ", b"? ",
             b"\t", b"'", b'"', b"#", b"|\n", b"\x07", b"\x00", b"%YAML 1.1\n", b"\\"]  # fmt: skip


@st.composite
def byte_mutations(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "flip", "utf8", "bom", "yaml"]))
        if kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif kind == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "utf8":
            data[at:at] = draw(st.sampled_from(INVALID_UTF8))
        elif kind == "bom":
            data[0:0] = draw(st.sampled_from(BOMS))
        elif kind == "yaml":
            data[at:at] = draw(st.sampled_from(YAML_BITS))
    return bytes(data)


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def laughs(levels: int) -> str:
    parts = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
YAML_VALUES = st.one_of(
    plain.map(json.dumps),
    st.integers(1, 80).map(nested),
    st.integers(1, 8).map(laughs),
    st.sampled_from(
        [
            "[&x [a, b], *x, *x]",
            "{? [a, b] : x}",
            "{[a, b]: x}",
            "{{a: 1}: x}",
            "{1: x}",
            "{on: x, null: y}",
            "{<<: {a: 1}, a: 2}",
            "2001-12-14t21:59:43.10-05:00",
            "2024-01-31",
            "!!binary aGVsbG8=",
            "!!set {a, b}",
            "!!omap [a: 1]",
            "!!python/object/apply:os.system ['true']",
            "!!float nan",
            ".inf",
            "-.inf",
            "0x_1F",
            "1:30:00",
            "~",
            "''",
            '"a\\nb: \'c\'\\t\\"d\\""',
            "'it''s: {x}'",
            "*undefined",
            "&dup a",
        ]
    ),
    st.integers(50, 6000).map(lambda n: "9" * n),
    st.integers(1_000, 300_000).map(lambda n: '"' + "x" * n + '"'),
    st.text(max_size=40).map(json.dumps),
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield from paths(value, (*prefix, key))


MARK = "FUZZVALUEMARK"  # a plain scalar, so the dump leaves it unquoted


@st.composite
def yaml_mutations(draw: st.DrawFn, original: bytes, rendered_dir: bool = False) -> bytes:
    """The file with the value at one path (or the whole file) replaced by YAML text.

    ``rendered_dir`` picks renderedDir as the path, and otherwise never: the folder
    written to is checked by its own test.
    """
    data = yaml.safe_load(original)
    every = [("renderedDir",)] if rendered_dir else [p for p in paths(data) if p[:1] != ("renderedDir",)]
    path = every[draw(st.integers(0, len(every) - 1))]
    if not path:
        return draw(YAML_VALUES).encode()
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = MARK
    text = yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False, width=1000)
    return text.replace(MARK, draw(YAML_VALUES)).encode()


TEMPLATE_SNIPPETS = [
    "{% include '/etc/hostname' %}",
    "{% include '../outside.txt' %}",
    "{% include 'environments/dev.yaml' %}",
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() | length }}",
    "{{ cycler.__init__.__globals__.os.popen('true').read() }}",
    "{{ lipsum.__globals__['os'].getcwd() }}",
    "{{ values.x }}",
    "{{ values }}",
    "{{ values | to_yaml }}",
    "{{ values | to_json }}",
    "{{ values.image | b64encode }}",
    "{{ workload }}",
    "{{ cls.name }}",
    "{% for k in values %}{{ k }}: x\n{% endfor %}",
    "{{",
    "{%",
    "{# ",
    "{% if %}",
    "{% endif %}",
    "{% raw %}",
    "{{ 1/0 }}",
    "{{ 'x' * 10 }}",
    "{% set x = 1 %}",
    "{% macro m() %}{% endmacro %}",
    "{% import '_helpers.j2' as h %}{{ h.image(values) }}",
    "{% extends '_helpers.j2' %}",
    "{% include 'fluent-bit.yaml.j2' %}",
    "{% for i in range(10**7) %}{% endfor %}",
    "  bad: [\n",
    "\n---\nkind: DaemonSet\n",
    "\nspec: null\n",
    "{{ '\\x00' }}",
]


@st.composite
def template_mutations(draw: st.DrawFn, original: bytes) -> bytes:
    if draw(st.booleans()):
        return draw(byte_mutations(original))
    data = original
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(TEMPLATE_SNIPPETS)).encode() + data[at:]
    return data


# --- The tests ------------------------------------------------------------------------------


@settings(FUZZ, max_examples=150)
@given(env=st.sampled_from(ENVIRONMENTS), data=st.data())
def test_byte_mutated_environment_files(pristine: Path, env: str, data: st.DataObject) -> None:
    original = (REPO / f"environments/{env}.yaml").read_bytes()
    mutated = data.draw(byte_mutations(original))
    with case_copy(pristine) as folder:
        (folder / f"project/environments/{env}.yaml").write_bytes(mutated)
        run_case(folder, env, "environment bytes", render_commands(env))


@settings(FUZZ, max_examples=150)
@given(env=st.sampled_from(ENVIRONMENTS), data=st.data())
def test_yaml_mutated_environment_files(pristine: Path, env: str, data: st.DataObject) -> None:
    original = (REPO / f"environments/{env}.yaml").read_bytes()
    mutated = data.draw(yaml_mutations(original))
    with case_copy(pristine) as folder:
        (folder / f"project/environments/{env}.yaml").write_bytes(mutated)
        run_case(folder, env, "environment values", render_commands(env, git_diff=True))


@settings(FUZZ, max_examples=40)
@given(env=st.sampled_from(ENVIRONMENTS), data=st.data())
def test_rendered_dir_mutated(pristine: Path, env: str, data: st.DataObject) -> None:
    original = (REPO / f"environments/{env}.yaml").read_bytes()
    mutated = data.draw(yaml_mutations(original, rendered_dir=True))
    with case_copy(pristine) as folder:
        (folder / f"project/environments/{env}.yaml").write_bytes(mutated)
        run_case(folder, env, "renderedDir values", render_commands(env, git_diff=True))


@settings(FUZZ, max_examples=80)
@given(template=st.sampled_from(TEMPLATES), env=st.sampled_from(ENVIRONMENTS), data=st.data())
def test_mutated_templates(pristine: Path, template: str, env: str, data: st.DataObject) -> None:
    mutated = data.draw(template_mutations((REPO / "templates" / template).read_bytes()))
    with case_copy(pristine) as folder:
        (folder / "project/templates" / template).write_bytes(mutated)
        run_case(folder, env, "templates", render_commands(env, git_diff=True))
