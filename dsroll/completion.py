"""Completion for ``kubectl dsroll``, spoken in Cobra's protocol.

kubectl hands a plugin's completion to ``kubectl_complete-<plugin> <words…>``, where
the last word is the one being completed, and reads candidates one per line followed by
``:<directive>``. The candidates come from dsroll's own command tree, so completion
always matches the real commands, environment names included.

Only the public API of the commands typer builds is used (``get_command``,
``make_context``, ``get_params``, ``shell_complete``): typer depends on click in older
releases and vendors it privately in newer ones, and both offer that API, while click's
own resolver (``click.shell_completion``) is reachable only through a private module in
the newer ones. Our command tree is simple enough to walk here: groups take only flags,
so the first word that is not an option names the subcommand.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from dsroll.cli import app
from dsroll.errors import DsrollError

NO_FILE_COMPLETION = 4  # Cobra's ShellCompDirectiveNoFileComp
_PROG = "kubectl dsroll"


def candidates(words: list[str]) -> list[str]:
    """The values that complete ``words[-1]`` after ``kubectl dsroll words[:-1]``.

    None where the words lead nowhere, or into a part that cannot load (the sandbox
    without its extra): completion offers nothing rather than a traceback.
    """
    try:
        return _candidates(words)
    except DsrollError:
        return []


def _candidates(words: list[str]) -> list[str]:
    *args, incomplete = words or [""]
    command: Any = typer.main.get_command(app)
    ctx = command.make_context(_PROG, [], resilient_parsing=True)
    rest = list(args)
    while isinstance(command, TyperGroup):
        while rest and rest[0].startswith("-"):
            rest.pop(0)
        if not rest:
            break
        name = rest.pop(0)
        command = command.get_command(ctx, name)
        if command is None:
            return []
        given = [] if isinstance(command, TyperGroup) else list(rest)
        ctx = command.make_context(name, given, parent=ctx, resilient_parsing=True)
    if incomplete.startswith("-") and "--" not in rest:
        items = command.shell_complete(ctx, incomplete)
    else:
        params = command.get_params(ctx)
        target = next((p for p in params if _awaits_option_value(p, rest)), None) or next(
            (p for p in params if _unfilled_argument(ctx, p)), None
        )
        items = (target or command).shell_complete(ctx, incomplete)
    return [item.value for item in items]


def _awaits_option_value(param: Any, args: list[str]) -> bool:
    """The last complete word is this option's name, and the option takes a value."""
    if param.param_type_name != "option" or param.is_flag or param.count:
        return False
    return bool(args) and args[-1] in (*param.opts, *param.secondary_opts)


def _unfilled_argument(ctx: Any, param: Any) -> bool:
    """A positional argument the words typed so far have not given yet."""
    if param.param_type_name != "argument":
        return False
    source = ctx.get_parameter_source(param.name)
    return param.nargs == -1 or getattr(source, "name", None) != "COMMANDLINE"


def main(argv: list[str] | None = None) -> None:
    """``kubectl_complete-dsroll``: kubectl passes the words typed after ``kubectl dsroll``."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in ("__complete", "__completeNoDesc"):
        words = words[1:]
    for value in candidates(words):
        print(value)
    print(f":{NO_FILE_COMPLETION}")


if __name__ == "__main__":
    main()
