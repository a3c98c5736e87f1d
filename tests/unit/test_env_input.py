"""A malformed environment file or template: one line naming file:line, exit 2, nothing written.

Each case runs the real ``render`` command on a copy of the example project, so what is
checked is what a user sees: the one error line on stderr and an untouched project.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from typer.testing import CliRunner

from dsroll.cli import app
from dsroll.config import parse_environment
from dsroll.errors import InputError
from dsroll.gitsource import MAX_FILE_BYTES, GitSource
from dsroll.yamlio import MAX_DEPTH

REPO = Path(__file__).resolve().parents[2]
DEV = (REPO / "environments/dev.yaml").read_bytes()
runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for folder in ("environments", "templates"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    notes = tmp_path / "rendered/dev/NOTES.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("written by a person\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in walk(root)}


def walk(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def refused(root: Path, args: list[str] | None = None) -> tuple[str, int | None]:
    """Run the command, which must refuse; returns the error line's message and line number."""
    before = snapshot(root)
    result = runner.invoke(app, args or ["render", "dev"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert snapshot(root) == before, "nothing is written when the input is refused"
    found = re.match(r"^error: ([^:]+?)(?::(\d+))?: (.*)$", lines[0])
    assert found, lines[0]
    return f"{found[1]}: {found[3]}", int(found[2]) if found[2] else None


def write_env(root: Path, data: bytes) -> None:
    (root / "environments/dev.yaml").write_bytes(data)


def line_of(data: bytes, needle: bytes) -> int:
    return data[: data.index(needle)].count(b"\n") + 1


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


BOMB = b"""
      l0: &l0 [a, b, c, d, e, f, g, h, i, j]
      l1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]
      l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]
      l3: &l3 [*l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2, *l2]
      l4: &l4 [*l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3, *l3]
      l5: &l5 [*l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4, *l4]
      l6: &l6 [*l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5, *l5]
      l7: &l7 [*l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6, *l6]
      l8: &l8 [*l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7, *l7]"""
TEXT_BOMB = (
    b"\n      s: &s " + b"x" * 100_000 + b"\n      t: &t [*s, *s, *s, *s, *s, *s, *s, *s, *s, *s]"
    b"\n      u: [*t, *t, *t, *t, *t, *t, *t, *t, *t, *t, *t, *t]"
)
CHAIN = b"".join(b"\n      c%d: &c%d [*c%d]" % (i, i, i - 1) for i in range(1, MAX_DEPTH + 2))


def in_values(snippet: bytes) -> bytes:
    """dev.yaml with ``snippet`` added to the first workload's values."""
    return DEV.replace(b"      parser: cri", b"      parser: cri" + snippet, 1)


CASES = [  # (file content, words of the message, line marker or None)
    (DEV.replace(b"parser: cri", b"parser: cr\xff"), "not valid UTF-8 (byte 0xff at line", b"parser: cr"),
    (DEV.replace(b"tag: v1.8.2", b"tag: v1.8.2\xe2\x82"), "not valid UTF-8 (byte 0xe2", b"tag: v1.8.2"),
    (b"\xff\xfe" + DEV.decode().encode("utf-16-le"), "encoded as UTF-16", b""),
    (b"\x00\x00\xfe\xff" + DEV.decode().encode("utf-32-be"), "encoded as UTF-32", b""),
    (DEV.replace(b"parser: cri", b"parser: c\x00ri"), "contains a NUL byte", b"parser: c"),
    (DEV + b"#" * MAX_FILE_BYTES, "larger than 1 MiB", None),
    (b"", "empty: an environment file is a YAML mapping", None),
    (b"# nothing but a comment\n", "empty", None),
    (b"- just\n- a list\n", "an environment file is a YAML mapping, not a list", b"- just"),
    (DEV + b"---\nkind: Environment\n", "a second YAML document", b"---"),
    (in_values(b"\n      deep: " + nested(MAX_DEPTH + 5)), "nested more than 50 levels deep", b"deep:"),
    (in_values(b"\n      ? [a, b]\n      : x"), "a list cannot be a key", b"? [a, b]"),
    (in_values(b"\n      {a: 1}: x"), "a mapping cannot be a key", b"{a: 1}: x"),
    (in_values(b"\n      1: x"), "key 1 is read as a number, but keys are strings: quote it", b"1: x"),
    (in_values(b"\n      on: x"), "key on is read as a boolean", b"on: x"),
    (in_values(b"\n      ~: x"), "key ~ is read as null", b"~: x"),
    (in_values(b"\n      x: !!binary aGVsbG8="), "!!binary (bytes) is not allowed here", b"x: !!binary"),
    (in_values(b"\n      x: !!set {a}"), "!!set (a set) is not allowed here", b"x: !!set"),
    (in_values(b"\n      x: !!python/object:os.system {}"), "invalid YAML", b"x: !!python"),
    (in_values(b"\n      n: " + b"9" * 5000), "a number of more than 100 characters", b"n: 999"),
    (in_values(b"\n      n: " + b"1:" * 3000 + b"1"), "a number of more than 100 characters", b"n: 1:"),
    (in_values(BOMB), "alias *l3 makes more than 100,000 values with aliases expanded", b"l4:"),
    (in_values(TEXT_BOMB), "alias *t makes more than 10 MiB of text with aliases expanded", b"u: [*t"),
    (in_values(b"\n      r: &r [*r]"), "alias *r refers to a mapping or list that contains it", b"r: &r"),
    (in_values(b"\n      c0: &c0 [x]" + CHAIN), "nests values more than 50 levels deep", b"c46:"),
    (in_values(b"\n      bell: \x07"), "character U+0007 is not allowed", b"bell:"),
    (in_values(b'\n      tag2: "1\\ud961\\udebc"'), "\\ud961 is not a character", b"tag2:"),
    (DEV.replace(b"metadata: {name: dev}", b"metadata: {name: dev"), "invalid YAML", b"cluster: {"),
]


@pytest.mark.parametrize(("data", "words", "marker"), CASES, ids=[c[1][:40] for c in CASES])
def test_malformed_environment_file(project: Path, data: bytes, words: str, marker: bytes | None) -> None:
    write_env(project, data)
    message, line = refused(project)
    assert message.startswith("environments/dev.yaml: ")
    assert words in message
    if marker is not None:
        assert line == (line_of(data, marker) if marker else 1), message
    assert len(message) < 300, "quoted input is shortened"


def test_byte_order_mark_and_crlf_are_plain_utf8(project: Path) -> None:
    reference = runner.invoke(app, ["render", "dev", "-o", "json"])
    assert reference.exit_code == 0, reference.output
    written = {p: p.read_bytes() for p in walk(project / "rendered")}
    write_env(project, b"\xef\xbb\xbf" + DEV.replace(b"\n", b"\r\n"))
    again = runner.invoke(app, ["render", "dev", "--check"])
    assert again.exit_code == 0, again.output
    assert {p: p.read_bytes() for p in walk(project / "rendered")} == written


def test_merge_keys_and_anchors_keep_working(project: Path) -> None:
    fluent = b"      resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 128Mi}}"
    exporter = b"      resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 64Mi}}"
    data = DEV.replace(fluent, fluent.replace(b"{requests", b"&res {requests")).replace(
        exporter, b"      resources:\n        <<: *res\n        limits: {memory: 64Mi}"
    )
    write_env(project, data)
    result = runner.invoke(app, ["render", "dev"])
    assert result.exit_code == 0, result.output
    rendered = yaml.safe_load((project / "rendered/dev/dsroll-demo/node-exporter-general.yaml").read_text())
    resources = rendered["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}


def test_dates_stay_the_text_they_were_written_as() -> None:
    env = parse_environment(in_values(b"\n      since: 2024-01-31").decode(), "dev.yaml")
    assert env.workloads[0].values["since"] == "2024-01-31"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"# a comment\n{{ values.image }}\xc3(", "not valid UTF-8 (byte 0xc3 at line 2)"),
        (b"\xfe\xff\x00{", "encoded as UTF-16"),
        (b"# a comment\na: {{ values.image }}\x00", "contains a NUL byte"),
    ],
)
def test_malformed_template(project: Path, data: bytes, words: str) -> None:
    (project / "templates/node-exporter.yaml.j2").write_bytes(data)
    message, line = refused(project)
    assert message.startswith("templates/node-exporter.yaml.j2: ")
    assert words in message
    assert line in (1, 2)


def test_files_from_git_are_decoded_the_same_way(tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path)
    (tmp_path / "bad.yaml").write_bytes(b"a: 1\nb: \xff\n")
    (tmp_path / "big.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfa: 1\r\n")
    repo.index.add(["bad.yaml", "big.yaml", "bom.yaml"])
    repo.index.commit("files")
    source = GitSource(repo, "HEAD")
    with pytest.raises(InputError, match=r"^bad\.yaml:2: not valid UTF-8 \(byte 0xff at line 2\)$"):
        source.read_text("bad.yaml")
    with pytest.raises(InputError, match=r"^big\.yaml: larger than 1 MiB"):
        source.read_text("big.yaml")
    assert source.read_text("bom.yaml") == "a: 1\n"


# --- Validation wording: every key of the examples, given every wrong kind of value ---

PYDANTIC_MARKERS = re.compile(
    r"\.str\b|\.int\b|\[str|any\]|function-|Input should|_type\b|pydantic|errors\.pydantic|union\[|literal\[|"
    r"dict\[|list\[|Model|Spec\b|MatchExpression|HardwareClass|RolloutOverride|RolloutPolicy|ObjectRef|Metadata\b|"
    r"Cluster\b|valid dictionary|valid string|valid integer|valid boolean|instance of|NoneType|\bdict\b|\bint\b|\bstr\b"
)
# Words a message may use besides the keys and words of the file and what the user wrote (quoted).
VOCABULARY = frozenset(
    re.findall(
        r"\w+",
        """
        must be a an the or of one not like string whole number percentage mapping list true false null manual duration
        required key missing unknown in and more is to at least steps are cumulative grow last step use partition stop
        early invalid value from with ms s m h longer than cannot negative dsroll io alpha Environment In NotIn Exists
        DoesNotExist Gt Lt rollback pause abort v JSON pointer b for class workload names known count does run
        on which has no mark it take every other node text
        """,
    )
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into ``data``; inside ``values`` only the first level, where any value is valid."""
    yield prefix
    if len(prefix) > 1 and prefix[-2] in ("values", "classValues"):
        return
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from paths(value, (*prefix, i))


def leaf(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data if isinstance(data, str) else ""


def replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
WRONG = [["a", "b"], {"k": "v"}, 7, True, None, "text"]


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_validation_messages_speak_the_file_format(name: str) -> None:
    original = yaml.safe_load((REPO / f"environments/{name}.yaml").read_text())
    keys = {str(p[-1]) for p in paths(original) if p and isinstance(p[-1], str)}
    keys |= {w for p in paths(original) if p for w in re.findall(r"[A-Za-z]+", str(leaf(original, p)))}
    messages = 0
    for path in list(paths(original))[1:]:
        for value in WRONG:
            text = yaml.dump(replaced(original, path, value), Dumper=DUMPER, sort_keys=False)
            try:
                parse_environment(text, "env.yaml")
            except InputError as exc:
                messages += 1
                message = str(exc)
                where = f"{path} = {value!r}: {message}"
                assert "\n" not in message, where
                assert exc.line is not None, where
                assert not PYDANTIC_MARKERS.search(message), where
                assert message.startswith(f"env.yaml:{exc.line}: "), where
                unquoted = re.sub(r"'[^']*'|\"[^\"]*\"|\[\d+\]|-?\d+(\.\d+)?%?", " ", message.split(": ", 1)[1])
                words = set(re.findall(r"[A-Za-z]+", unquoted)) - keys - VOCABULARY
                assert not words, f"{where}: words outside the format's vocabulary: {sorted(words)}"
    assert messages > 100


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("rollout", "steps", 1), {"a": 1}, 'rollout.steps[1]: must be a string like "1" or "10%", not a mapping'),
        (
            ("hardwareClasses", 1, "matchExpressions", 0, "operator"),
            "Foo",
            "hardwareClasses[1].matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, Gt, Lt, "
            "not 'Foo'",
        ),
        (("workloads", 0, "values"), [1], "workloads[0].values: must be a mapping, not a list"),
        (
            ("rollout", "maxUnavailable"),
            1.5,
            'rollout.maxUnavailable: must be a whole number or a percentage like "25%"',
        ),
        (("hardwareClasses", 0, "nodeSelector", "nvidia.com/gpu.present"), True, "nodeSelector['nvidia.com/gpu"),
        (("hardwareClasses", 1, "matchExpressions", 0), "x", "matchExpressions[0]: must be a mapping, not 'x'"),
        (("cluster",), None, "cluster: must be a mapping, not null"),
        (("rollout", "pause"), [], 'rollout.pause: must be manual, a duration like "30s", or 0, not a list'),
    ],
)
def test_validation_message_examples(path: tuple[Any, ...], value: Any, message: str) -> None:
    original = yaml.safe_load(DEV)
    with pytest.raises(InputError) as info:
        parse_environment(yaml.safe_dump(replaced(original, path, value), sort_keys=False), "env.yaml")
    assert message in str(info.value)
