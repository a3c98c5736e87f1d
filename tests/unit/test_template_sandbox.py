"""Templates are untrusted: they render in a sandbox and load only files inside the project.

Each refusal is checked the way a user meets it: exit 2, one line naming file:line, nothing
written, and the content of a file outside the project nowhere in the output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from dsroll.cli import app
from dsroll.errors import InputError
from dsroll.gitsource import FsSource, GitSource, Source
from dsroll.projectpath import OutsideProject, beside, inside_project
from dsroll.render import RenderResult, load_environment, render_environment
from tests.conftest import ENV, TEMPLATE

runner = CliRunner()
SECRET = "s3cr3t-from-outside-the-project"
REPO_ROOT = Path(__file__).resolve().parents[2]
ESCAPE_LINE = 6


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder beside the project holding a file no template may read."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.j2").write_text(SECRET + "\n")
    return folder


def with_line(expression: str) -> str:
    """TEMPLATE with ``expression`` on line ESCAPE_LINE."""
    lines = TEMPLATE.splitlines(keepends=True)
    return "".join([*lines[: ESCAPE_LINE - 1], expression + "\n", *lines[ESCAPE_LINE - 1 :]])


def render(source: Source) -> RenderResult:
    return render_environment(load_environment(source, "environments/test.yaml"), source)


def refused_by_cli(root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The one error line `dsroll render` prints; asserts exit 2 and that nothing was written."""
    monkeypatch.chdir(root)
    result = runner.invoke(app, ["render", "test"])
    assert result.exit_code == 2, result.output
    assert SECRET not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert not (root / "rendered").exists()
    return lines[0]


def commit(root: Path) -> GitSource:
    repo = git.Repo.init(root)
    with repo.config_writer() as config:
        config.set_value("user", "name", "t").set_value("user", "email", "t@example.com")
    repo.git.add("-A")
    repo.git.commit("-qm", "project")
    return GitSource(repo, "HEAD")


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('cat /etc/hostname').read() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ lipsum.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ joiner.__init__ }}",
    "{{ range.__self__ }}",
    "{{ ''.mro }}",
    "{{ lipsum.func_globals }}",
    "{{ values.__class__ }}",
    "{{ '{0.__class__}'.format(values) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ '{x.__class__}'.format_map({'x': values}) }}",
    "{% set x = [].append %}",
    "{% set l = [1] %}{{ l.append(2) }}",
    "{{ values.update({'image': 'evil'}) }}",
    "{{ values.items.__self__ }}",
    "{% if ''.__class__ is defined %}probe{% endif %}",
    "{{ 'a' * 10**9 }}",
    "{{ 10**9 * 'a' }}",
    "{{ [1] * 10**9 }}",
    "{{ 2 ** 100000000 }}",
    "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{{ 'a'.center(10**7) }}",
    "{% for i in range(10**7) %}{% endfor %}",
]


@pytest.mark.parametrize("expression", ESCAPES)
def test_sandbox_refuses_escape_at_its_line(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, expression: str
) -> None:
    root = make_project(templates={"agent.yaml.j2": with_line(expression)})
    line = refused_by_cli(root, monkeypatch)
    assert line.startswith(f"error: templates/agent.yaml.j2:{ESCAPE_LINE}: "), line
    assert line.endswith("(workload agent, class gpu)"), line
    assert "Traceback" not in line


def test_sandbox_message_names_the_attribute(make_project: Callable[..., Path]) -> None:
    root = make_project(templates={"agent.yaml.j2": with_line("{{ lipsum.__globals__ }}")})
    with pytest.raises(InputError) as info:
        render(FsSource(root))
    assert (info.value.file, info.value.line) == ("templates/agent.yaml.j2", ESCAPE_LINE)
    assert str(info.value) == (
        f"templates/agent.yaml.j2:{ESCAPE_LINE}: template sandbox: access to attribute '__globals__' "
        "of 'function' object is unsafe (workload agent, class gpu)"
    )


def test_rendered_text_over_the_cap_is_refused(make_project: Callable[..., Path]) -> None:
    big = "{% for i in range(100000) %}{{ 'a' * 1000000 }}{% endfor %}"
    with pytest.raises(InputError) as info:
        render(FsSource(make_project(templates={"agent.yaml.j2": with_line(big)})))
    assert info.value.file == "templates/agent.yaml.j2"
    assert "rendered text would be more than the 1048576 characters" in str(info.value)
    assert "(workload agent, class gpu)" in str(info.value)


def test_plain_template_features_still_work(make_project: Callable[..., Path]) -> None:
    features = (
        "  x: \"{{ values.image | upper }}-{{ ('x' ~ 1) * 2 }}-{{ 2 ** 10 }}-{{ '%s' | format(1) }}"
        "-{{ '{}'.format(cls.name) }}-{{ values.items() | list | length }}-{{ range(3) | join }}\""
    )
    result = render(FsSource(make_project(templates={"agent.yaml.j2": with_line(features)})))
    assert result.variants[0].manifest["spec"]["x"] == "EXAMPLE.COM/AGENT-x1x1-1024-1-gpu-2-012"


def test_undefined_value_names_workload_and_class(make_project: Callable[..., Path]) -> None:
    env = ENV.replace('classValues: {arm64: {tag: "1.0-arm64"}}', "classValues: {gpu: {x: a}, arm64: {x: b}}")
    template = TEMPLATE.replace("{{ values.tag }}", "{{ values.x }}")
    with pytest.raises(InputError) as info:
        render(FsSource(make_project(env=env, templates={"agent.yaml.j2": template})))
    assert str(info.value) == (
        "templates/agent.yaml.j2:14: undefined template variable: 'dict object' has no attribute 'x' "
        "(workload agent, class general)"
    )


def _relative(root: Path, target: Path) -> str:
    return os.path.relpath(target, root / "templates")


@pytest.mark.parametrize("how", ["absolute", "dotdot", "dotdot-from-root", "symlink-file", "symlink-folder"])
@pytest.mark.parametrize("statement", ["{% include '{}' %}", "{% import '{}' as h %}", "{% from '{}' import m %}"])
def test_loading_from_outside_the_project_is_refused_on_disk(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, outside: Path, how: str, statement: str
) -> None:
    root = make_project()
    name = {
        "absolute": str(outside / "secret.j2"),
        "dotdot": _relative(root, outside / "secret.j2"),
        "dotdot-from-root": "../" * 40 + "etc/hostname",
        "symlink-file": "link.j2",
        "symlink-folder": "linked/secret.j2",
    }[how]
    (root / "templates/link.j2").symlink_to(outside / "secret.j2")
    (root / "templates/linked").symlink_to(outside, target_is_directory=True)
    (root / "templates/agent.yaml.j2").write_text(with_line(statement.replace("{}", name)))
    line = refused_by_cli(root, monkeypatch)
    assert line.startswith(f"error: templates/agent.yaml.j2:{ESCAPE_LINE}: template {name!r} is outside the project")
    assert "templates load only from files inside the project" in line


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/hostname", "is outside the project (an absolute path)"),
        ("../../etc/hostname", "is outside the project (its '..' climbs above the project root)"),
        ("link.j2", "is a symlink at git HEAD"),
        ("linked/secret.j2", "passes through 'templates/linked', which is a symlink at git HEAD"),
    ],
)
def test_loading_from_outside_the_project_is_refused_in_git(
    make_project: Callable[..., Path], outside: Path, name: str, reason: str
) -> None:
    root = make_project()
    (root / "templates/link.j2").symlink_to(outside / "secret.j2")
    (root / "templates/linked").symlink_to(outside, target_is_directory=True)
    (root / "templates/agent.yaml.j2").write_text(with_line(f"{{% include '{name}' %}}"))
    source = commit(root)
    with pytest.raises(InputError) as info:
        render(source)
    assert (info.value.file, info.value.line) == ("templates/agent.yaml.j2", ESCAPE_LINE)
    assert f"template {name!r} {reason}" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_symlink_in_git_is_refused_even_when_it_points_inside(make_project: Callable[..., Path]) -> None:
    root = make_project(templates={"agent.yaml.j2": with_line("{% include 'alias.j2' %}"), "_real.j2": "# x\n"})
    (root / "templates/alias.j2").symlink_to("_real.j2")
    assert render(FsSource(root)).variants, "on disk a symlink that stays inside is followed"
    with pytest.raises(InputError, match=r"'alias.j2' is a symlink at git HEAD .* never followed"):
        render(commit(root))


HELPERS = "{% macro image(v) %}{{ v.image }}:{{ v.tag }}{% endmacro %}\n"


@pytest.mark.parametrize(
    ("statement", "files"),
    [
        ("{% import '_helpers.j2' as h %}", {"templates/_helpers.j2": HELPERS}),
        ("{% from '_helpers.j2' import image %}", {"templates/_helpers.j2": HELPERS}),
        ("{% import 'shared/_helpers.j2' as h %}", {"shared/_helpers.j2": HELPERS}),
        ("{% import '../shared/_helpers.j2' as h %}", {"shared/_helpers.j2": HELPERS}),
        ("{% import 'templates/_helpers.j2' as h %}", {"templates/_helpers.j2": HELPERS}),
        ("{% import 'sub/../_helpers.j2' as h %}", {"templates/_helpers.j2": HELPERS}),
    ],
)
@pytest.mark.parametrize("in_git", [False, True])
def test_includes_inside_the_project_work(
    make_project: Callable[..., Path], statement: str, files: dict[str, str], in_git: bool
) -> None:
    call = "{{ image(values) }}" if "from" in statement else "{{ h.image(values) }}"
    template = statement + TEMPLATE.replace("{{ values.image }}:{{ values.tag }}", call)
    root = make_project(templates={"agent.yaml.j2": template})
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    source: Source = commit(root) if in_git else FsSource(root)
    container = render(source).variants[1].manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.com/agent:1.0-arm64"


def test_a_symlink_staying_inside_the_project_is_followed_on_disk(make_project: Callable[..., Path]) -> None:
    template = "{% import 'shared/h.j2' as h %}" + TEMPLATE.replace(
        "{{ values.image }}:{{ values.tag }}", "{{ h.image(values) }}"
    )
    root = make_project(templates={"agent.yaml.j2": template})
    (root / "lib").mkdir()
    (root / "lib/h.j2").write_text(HELPERS)
    (root / "shared").symlink_to(root / "lib", target_is_directory=True)
    assert render(FsSource(root)).variants[0].manifest["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "example.com/agent:1.0"
    )


def _template_line_of(env_text: str) -> int:
    return next(i for i, line in enumerate(env_text.splitlines(), 1) if line.strip().startswith("template:"))


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("/etc/passwd", "is outside the project (an absolute path)"),
        ("../outside/x.j2", "is outside the project (its '..' climbs above the project root)"),
        ("templates/../../x.j2", "is outside the project (its '..' climbs above the project root)"),
        ("templates/link.yaml.j2", "is outside the project (a symlink on its way resolves outside it)"),
        ("templates/linked/secret.j2", "is outside the project (a symlink on its way resolves outside it)"),
    ],
)
def test_environment_template_outside_the_project_is_refused_at_its_line(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, outside: Path, template: str, reason: str
) -> None:
    env = ENV.replace("template: templates/agent.yaml.j2", f"template: {template}")
    root = make_project(env=env)
    (root / "templates/link.yaml.j2").symlink_to(outside / "secret.j2")
    (root / "templates/linked").symlink_to(outside, target_is_directory=True)
    line = refused_by_cli(root, monkeypatch)
    assert line == (
        f"error: environments/test.yaml:{_template_line_of(env)}: template {template!r} {reason}: "
        "templates must be files inside the project"
    )


def test_a_template_path_no_file_system_can_hold_is_not_found_in_one_short_line(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    template = "templates/" + "x" * 5000 + ".j2"
    env = ENV.replace("template: templates/agent.yaml.j2", f"template: {template}")
    root = make_project(env=env)
    line = refused_by_cli(root, monkeypatch)
    assert line.startswith(f"error: environments/test.yaml:{_template_line_of(env)}: template 'templates/xxx")
    assert line.endswith("…' not found") and len(line) < 200, line


def test_environment_template_symlink_is_refused_in_git(make_project: Callable[..., Path], outside: Path) -> None:
    env = ENV.replace("template: templates/agent.yaml.j2", "template: templates/link.yaml.j2")
    root = make_project(env=env)
    (root / "templates/link.yaml.j2").symlink_to(outside / "secret.j2")
    with pytest.raises(InputError) as info:
        render(commit(root))
    assert (info.value.file, info.value.line) == ("environments/test.yaml", _template_line_of(env))
    assert "'templates/link.yaml.j2' is a symlink at git HEAD" in str(info.value)


def test_environment_template_path_is_normalised(make_project: Callable[..., Path]) -> None:
    env = ENV.replace("template: templates/agent.yaml.j2", "template: ./templates/x/../agent.yaml.j2")
    result = render(FsSource(make_project(env=env)))
    assert result.variants[0].template == "templates/agent.yaml.j2"


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("templates/a.j2", "templates/a.j2"),
        ("./templates//a.j2", "templates/a.j2"),
        ("templates/sub/../a.j2", "templates/a.j2"),
        ("a/b/../../c.j2", "c.j2"),
    ],
)
def test_inside_project_normalises(path: str, normal: str) -> None:
    assert inside_project(path) == normal


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "\\\\host\\share", "C:/x.j2", "..", "../x", "a/../../x", ".", "a\0b"]
)
def test_inside_project_refuses(path: str) -> None:
    with pytest.raises(OutsideProject):
        inside_project(path)


def test_beside_refuses_an_absolute_name_instead_of_rerooting_it() -> None:
    assert beside("templates", "../shared/h.j2") == "shared/h.j2"
    with pytest.raises(OutsideProject, match="absolute"):
        beside("templates", "/etc/hostname")


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_the_examples_render_unchanged(name: str) -> None:
    """The example templates use imports and macros; the sandbox must not change a byte."""
    proc = subprocess.run(
        [sys.executable, "-m", "dsroll", "render", name, "--check"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
