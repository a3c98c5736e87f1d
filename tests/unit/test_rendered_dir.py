"""Where render writes, and what it removes: renderedDir rules, header-based ownership,
no writes through symbolic links, atomic writes. Every refusal leaves the tree as it was."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsroll import layout
from dsroll.cli import app
from dsroll.gitsource import FsSource
from dsroll.render import load_environment, render_environment
from tests.conftest import ENV

runner = CliRunner()
HEADER = "# Rendered by dsroll from templates/agent.yaml.j2 for environment {env}, class {cls}.\n"
AGENTS = "rendered/test/agents"


def with_rendered_dir(value: str, env: str = ENV) -> str:
    """The environment with ``renderedDir`` on line 4, right below metadata."""
    lines = env.splitlines(keepends=True)
    return "".join([*lines[:3], f"renderedDir: {value}\n", *lines[3:]])


def snapshot(root: Path) -> dict[str, str]:
    """Every entry below ``root``: a file's text, a link's target, or a folder marker."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                seen[rel] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                seen[rel] = "<dir>"
            else:
                seen[rel] = path.read_text()
    return seen


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def project(make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """A project with some files of the user's in it, the current directory."""

    def make(env: str = ENV) -> Path:
        root = make_project(env=env)
        write(root / "plugin.yaml", "name: dsroll\n")
        write(root / "notes.yaml", "mine: true\n")
        write(root / "environments/notes.txt", "not an environment\n")
        monkeypatch.chdir(root)
        return root

    return make


def refused(root: Path, *args: str) -> str:
    """Run render (or the command given), expect exit 2 and an unchanged tree; the one error line."""
    before = snapshot(root)
    result = runner.invoke(app, list(args) or ["render", "test"])
    assert result.exit_code == 2, result.output
    assert snapshot(root) == before, "a refused render writes and removes nothing"
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (".", "is the project root"),
        ("./", "is the project root"),
        ("templates/..", "is the project root"),
        ('""', "is empty"),
        ("/abs", "is outside the project (an absolute path)"),
        ("../x", "climbs above the project root"),
        ("rendered/../../x", "climbs above the project root"),
        ("environments", "is environments/, which holds the environment files"),
        ("environments/sub", "overlaps environments/"),
        ("templates", "is templates/, which holds the templates"),
        ("Templates/out", "overlaps templates/"),
        (".git", "is .git/"),
        ("a\\b", "backslash"),
        ("x" * 300, "file systems allow 255 bytes a name"),
        ("/".join(["abcdefgh"] * 150), "keep it under 1024 bytes"),
    ],
)
def test_a_renderedDir_outside_its_own_folder_is_refused_at_its_line(
    project: Callable[..., Path], value: str, why: str
) -> None:
    root = project(with_rendered_dir(value))
    write(root / AGENTS / "agent-gpu.yaml", HEADER.format(env="test", cls="gpu"))
    line = refused(root)
    assert line.startswith("error: environments/test.yaml:4: renderedDir "), line
    assert why in line
    assert not (root.parent / "x").exists()


def test_a_renderedDir_containing_a_template_folder_is_refused(project: Callable[..., Path]) -> None:
    env = with_rendered_dir("deploy", ENV.replace("templates/agent.yaml.j2", "deploy/templates/agent.yaml.j2"))
    root = project(env)
    write(root / "deploy/templates/agent.yaml.j2", (root / "templates/agent.yaml.j2").read_text())
    line = refused(root)
    assert "environments/test.yaml:4:" in line and "overlaps deploy/templates/" in line


def test_dotdot_inside_the_project_is_resolved_before_any_file_is_touched(project: Callable[..., Path]) -> None:
    root = project(with_rendered_dir("out/../manifests"))
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 0, result.output
    assert (root / "manifests/agents/agent-gpu.yaml").is_file()
    assert not (root / "out").exists()


OTHER = ENV.replace("metadata: {name: test}", "metadata: {name: other}")


@pytest.mark.parametrize(
    ("other_dir", "relation"),
    [
        ("rendered/test", "is also the renderedDir of environments/other.yaml"),
        ("rendered/test/nested", "contains rendered/test/nested, the renderedDir of environments/other.yaml"),
        ("rendered", "lies inside rendered, the renderedDir of environments/other.yaml"),
        ("RENDERED/Test", "is also the renderedDir of environments/other.yaml"),
    ],
)
def test_a_folder_shared_with_another_environment_is_refused_and_its_files_kept(
    project: Callable[..., Path], other_dir: str, relation: str
) -> None:
    root = project()
    write(root / "environments/other.yaml", with_rendered_dir(other_dir, OTHER))
    theirs = write(root / AGENTS / "agent-tpu.yaml", HEADER.format(env="other", cls="tpu") + "kind: DaemonSet\n")
    line = refused(root)
    assert line.startswith("error: environments/test.yaml:3: renderedDir rendered/test "), line
    assert relation in line
    assert theirs.read_text().startswith(HEADER.format(env="other", cls="tpu"))


def test_two_files_of_one_name_share_the_default_folder_and_are_refused(project: Callable[..., Path]) -> None:
    root = project()
    write(root / "environments/copy.yaml", ENV)
    line = refused(root)
    assert "is also the renderedDir of environments/copy.yaml" in line
    refused(root, "diff", "test", "--against", "git")  # the same rule where git is compared


def test_a_broken_sibling_environment_file_is_a_warning(project: Callable[..., Path]) -> None:
    root = project()
    write(root / "environments/broken.yaml", "apiVersion: [unclosed\n")
    write(root / "environments/nameless.yaml", "kind: Environment\nmetadata: {}\n")
    write(root / "environments/values.yaml", "just: values\n")  # not an environment file: not its business
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 0, result.output
    assert "warning: environments/broken.yaml:" in result.output
    assert "warning: environments/nameless.yaml: metadata.name is missing" in result.output
    assert "values.yaml" not in result.output
    assert (root / AGENTS / "agent-gpu.yaml").is_file()


@pytest.mark.parametrize("link", ["rendered", "rendered/test"])
def test_a_symlinked_renderedDir_is_refused(
    project: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory, link: str
) -> None:
    root = project()
    outside = tmp_path_factory.mktemp("outside")
    write(outside / "keep.yaml", "outside: true\n")
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(outside, target_is_directory=True)
    line = refused(root)
    assert line.startswith("error: environments/test.yaml:3: renderedDir rendered/test: "), line
    assert f"{link} is a symbolic link" in line
    assert snapshot(outside) == {"keep.yaml": "outside: true\n"}


def test_a_symlinked_target_file_is_refused_and_its_target_untouched(
    project: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = project()
    victim = write(tmp_path_factory.mktemp("outside") / "victim.yaml", "precious\n")
    (root / AGENTS).mkdir(parents=True)
    (root / AGENTS / "agent-gpu.yaml").symlink_to(victim)
    line = refused(root)
    assert "rendered/test/agents/agent-gpu.yaml is a symbolic link" in line
    refused(root, "render", "test", "--check")
    assert victim.read_text() == "precious\n"


def test_a_symlinked_namespace_folder_is_refused(
    project: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = project()
    outside = tmp_path_factory.mktemp("outside")
    (root / "rendered/test").mkdir(parents=True)
    (root / AGENTS).symlink_to(outside, target_is_directory=True)
    assert "rendered/test/agents is a symbolic link" in refused(root)
    assert list(outside.iterdir()) == []


def test_files_dsroll_did_not_write_are_left_alone_warned_about_and_no_drift(project: Callable[..., Path]) -> None:
    root = project()
    kept = {
        "rendered/test/kustomization.yaml": "resources: [agents/agent-gpu.yaml]\n",
        "rendered/test/README.md": "# rendered\n",
        "rendered/test/agents/notes.yaml": "mine: true\n",
        "rendered/test/agents/agent-x.yml": HEADER.format(env="test", cls="x"),
        "rendered/test/agents/agent-legacy.yaml": HEADER.format(env="prod", cls="legacy"),
        "rendered/test/old/deep/agent-gpu.yaml": HEADER.format(env="test", cls="gpu"),
    }
    for rel, text in kept.items():
        write(root / rel, text)
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 0, result.output
    assert "warning: rendered/test/kustomization.yaml was not written by dsroll: left alone" in result.output
    assert "warning: rendered/test/README.md was not written by dsroll: left alone" in result.output
    assert "warning: rendered/test/agents/notes.yaml was not written by dsroll: left alone" in result.output
    assert "agent-legacy.yaml was written by dsroll for environment prod: left alone" in result.output
    assert "agent-x.yml was written by dsroll, but is not where a variant goes: left alone" in result.output
    assert "removed" not in result.output.replace("0 removed", "")
    assert {rel: (root / rel).read_text() for rel in kept} == kept

    check = runner.invoke(app, ["render", "test", "--check", "-o", "json"])
    assert check.exit_code == 0, check.output
    report = json.loads(check.stdout)
    assert report["drift"] is False
    assert {f["status"] for f in report["files"]} == {"unchanged"}
    assert any("kustomization.yaml was not written by dsroll" in w for w in report["warnings"])


def test_a_foreign_file_at_a_variant_path_is_not_overwritten(project: Callable[..., Path]) -> None:
    root = project()
    write(root / AGENTS / "agent-gpu.yaml", "hand-written: true\n")
    line = refused(root)
    assert "rendered/test/agents/agent-gpu.yaml was not written by dsroll" in line
    assert "move it away or delete it" in line
    write(root / AGENTS / "agent-gpu.yaml", HEADER.format(env="prod", cls="gpu"))
    assert "was written by dsroll for environment prod" in refused(root, "render", "test", "--check")


def test_stale_files_of_this_environment_are_removed_with_their_empty_folder(project: Callable[..., Path]) -> None:
    root = project()
    stale = write(root / "rendered/test/gone/agent-gpu.yaml", HEADER.format(env="test", cls="gpu"))
    check = runner.invoke(app, ["render", "test", "--check"])
    assert check.exit_code == 1 and "would-remove rendered/test/gone/agent-gpu.yaml" in check.output
    assert stale.exists()
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 0, result.output
    assert "removed   rendered/test/gone/agent-gpu.yaml" in result.output
    assert not stale.parent.exists()
    assert (root / "rendered/test").is_dir()


def test_a_stale_file_that_is_a_symlink_is_left_alone(
    project: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = project()
    victim = write(tmp_path_factory.mktemp("outside") / "victim.yaml", HEADER.format(env="test", cls="gpu"))
    link = root / AGENTS / "agent-old.yaml"
    link.parent.mkdir(parents=True)
    link.symlink_to(victim)
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 0, result.output
    assert "rendered/test/agents/agent-old.yaml is a symbolic link: left alone" in result.output
    assert link.is_symlink() and victim.read_text() == HEADER.format(env="test", cls="gpu")


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary_file(
    project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project()
    assert runner.invoke(app, ["render", "test"]).exit_code == 0
    before = snapshot(root / "rendered")
    env = root / "environments/test.yaml"
    env.write_text(env.read_text().replace('tag: "1.0"', 'tag: "2.0"'))

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code != 0
    assert snapshot(root / "rendered") == before, "old manifests intact, no temporary file left"
    monkeypatch.undo()
    monkeypatch.chdir(root)
    assert runner.invoke(app, ["render", "test"]).exit_code == 0
    assert "agent:2.0" in (root / AGENTS / "agent-gpu.yaml").read_text()


def test_written_files_get_the_usual_permissions(project: Callable[..., Path]) -> None:
    root = project()
    assert runner.invoke(app, ["render", "test"]).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert (root / AGENTS / "agent-gpu.yaml").stat().st_mode & 0o777 == 0o666 & ~mask


def test_every_rendered_file_is_recognised_as_this_environments(project: Callable[..., Path]) -> None:
    root = project()
    source = FsSource(root)
    result = render_environment(load_environment(source, "environments/test.yaml"), source)
    assert {layout.written_for(v.text.splitlines()[0]) for v in result.variants} == {"test"}
    assert all(layout.is_variant_path(v.path) for v in result.variants)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_diff_against_git_ignores_files_render_did_not_write_for_this_environment(
    project: Callable[..., Path],
) -> None:
    root = project()
    git(root, "init", "-q", "-b", "main")
    assert runner.invoke(app, ["render", "test"]).exit_code == 0
    write(root / "rendered/test/kustomization.yaml", "resources: []\n")
    write(root / AGENTS / "agent-legacy.yaml", HEADER.format(env="prod", cls="legacy") + "kind: DaemonSet\n")
    write(root / AGENTS / "notes.yaml", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\n")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "render")
    result = runner.invoke(app, ["diff", "test", "--against", "git", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["removed"] == 0


@pytest.mark.parametrize(
    ("given", "normal"),
    [("rendered/dev", "rendered/dev"), ("./a//b/", "a/b"), ("a/../b", "b"), ("a/./b/..", "a")],
)
def test_normalise_is_lexical(given: str, normal: str) -> None:
    assert layout.normalise(given) == normal


def test_overlap_is_equal_or_inside_by_whole_folder_names() -> None:
    assert layout.overlaps("rendered", "rendered/dev")
    assert layout.overlaps("rendered/dev", "rendered")
    assert layout.overlaps("rendered/dev", "rendered/dev")
    assert not layout.overlaps("rendered/dev", "rendered/dev2")
    assert not layout.overlaps("templates-out", "templates")


def test_a_header_is_recognised_only_as_render_writes_it() -> None:
    assert layout.written_for(HEADER.format(env="prod", cls="gpu")) == "prod"
    assert layout.written_for("# Rendered by dsroll from a for environment x, y for environment prod, class gpu.") == (
        "prod"
    )
    assert layout.written_for("# rendered by dsroll from t for environment prod, class gpu.") is None
    assert layout.written_for("kind: DaemonSet") is None


def test_a_file_system_error_while_writing_is_one_line_naming_the_file(
    project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project()

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(root / "rendered/test/agents/agent-gpu.yaml"))

    monkeypatch.setattr("dsroll.rendered.write_atomically", full)
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: environments/test.yaml: cannot write rendered/test/agents/agent-gpu.yaml: No space left on device"
    ]
