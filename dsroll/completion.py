"""Completion for ``kubectl dsroll``, spoken in Cobra's protocol.

kubectl hands a plugin's completion to ``kubectl_complete-<plugin> <words…>``, where
the last word is the one being completed, and reads candidates one per line followed by
``:<directive>``. We ask click (under typer) for the candidates, so completion always
matches the real command tree, environment names included.
"""

from __future__ import annotations

import sys

import typer

try:  # typer >= 0.20 vendors click
    from typer._click.shell_completion import ShellComplete  # type: ignore[import-not-found]
except ImportError:  # older typer depends on click itself
    from click.shell_completion import ShellComplete  # type: ignore[no-redef]

from dsroll.cli import app

NO_FILE_COMPLETION = 4  # Cobra's ShellCompDirectiveNoFileComp


def candidates(words: list[str]) -> list[str]:
    args, incomplete = (words[:-1], words[-1]) if words else ([], "")
    command = typer.main.get_command(app)
    completer = _Cobra(command, {}, "kubectl dsroll", "_DSROLL_COMPLETE")
    return [item.value for item in completer.get_completions(args, incomplete)]


class _Cobra(ShellComplete):  # type: ignore[misc]
    """Only ``get_completions`` is used; the shell-script hooks click wants are not."""

    name = "cobra"
    source_template = ""

    def source_vars(self) -> dict[str, object]:
        return {}

    def get_completion_args(self) -> tuple[list[str], str]:
        return [], ""

    def format_completion(self, item: object) -> str:
        return str(getattr(item, "value", item))


def main(argv: list[str] | None = None) -> None:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in ("__complete", "__completeNoDesc"):
        words = words[1:]
    for value in candidates(words):
        print(value)
    print(f":{NO_FILE_COMPLETION}")


if __name__ == "__main__":
    main()
