"""Every command's --help teaches: examples that parse, kubectl-style value names, exit codes last."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dsroll.cli import app

runner = CliRunner()
EXIT_CODES = re.compile(r"Exit codes: 0 done, .*70 internal error \(a bug; --debug shows it\)\.$", re.S)


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every command below ``group``, sub-groups (``sandbox``, ``sandbox fault``) walked."""
    found: list[tuple[str, ...]] = []
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = _commands(typer.main.get_group(app))


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _examples(text: str) -> list[list[str]]:
    """The example command lines of a help text, as argv after the program name, up to a pipe or redirect."""
    lines = [line.strip() for line in text.split("Examples:", 1)[1].splitlines()]
    argvs = []
    for line in lines:
        if line.startswith("dsroll "):
            words = shlex.split(line)[1:]
            cut = [i for i, w in enumerate(words) if w in ("|", ">")]
            argvs.append(words[: cut[0]] if cut else words)
    return argvs


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path in COMMANDS}
    expected = {"render", "diff", "nodes", "plan", "rollout", "resume", "rollback", "restart", "status", "history"}
    expected |= {"pause", "abort", "init", "schema", "rbac"}
    expected |= {"sandbox up", "sandbox down", "sandbox status", "sandbox build"}
    expected |= {"sandbox fault restart", "sandbox fault pause", "sandbox fault node"}
    assert expected <= names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_help_has_examples_of_that_command_that_parse(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert "Examples:" in text
    examples = _examples(text)
    assert examples, text
    for argv in examples:
        assert tuple(argv[: len(path)]) == path, f"an example of {' '.join(path)} runs {argv}"
        parsed = runner.invoke(app, [*argv, "--help"], terminal_width=200)
        assert parsed.exit_code == 0, f"{argv}: {parsed.output}"


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_help_ends_with_the_exit_codes(path: tuple[str, ...]) -> None:
    text = _help(path)
    last = " ".join(text[text.rindex("Exit codes:") :].split())
    assert EXIT_CODES.match(last), last


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_values_are_named_like_kubectl(path: tuple[str, ...]) -> None:
    text = _help(path)
    for python_type in ("<list", "[str]", "TEXT", "<str>", "<path>", "<int>", "<float>"):
        options = text.split("Options", 1)[-1]
        assert python_type not in options, f"{' '.join(path)}: {python_type}"
