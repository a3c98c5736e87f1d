"""One exception hierarchy; the CLI maps each class to an exit code in one place.

Anything else that escapes a command is a bug in dsroll and exits 70 (``cli/app.py``), so a
CI job never mistakes a crash for "differences found" (1) or "nothing was applied" (2).
"""

from __future__ import annotations

BAD_INPUT = "2 bad input or a cluster error (nothing applied)"


def exits(*codes: str) -> str:
    """A command's --help epilog: what each of its exit codes means, 70 (a bug) last for all."""
    return "Exit codes: " + ", ".join(("0 done", *codes, "70 internal error (a bug; --debug shows it)")) + "."


class DsrollError(Exception):
    """Base of every error dsroll reports to the user as one line."""

    exit_code = 2


class InputError(DsrollError):
    """Bad input: environment file, template, flags. Nothing was applied."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(where + message)


class ClusterError(DsrollError):
    """The cluster refused or could not be reached; ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ApiUnavailable(ClusterError):
    """The API server failed transiently (unreachable, timing out, 429, 5xx) for longer than
    the client's retry budget (``kube/retry.py``). Exit 2 before a run changed anything,
    like any cluster error; a rollout that had changed something stops with exit 5."""


class SandboxError(DsrollError):
    """The local sandbox cluster could not be built or started."""


class WaitTimedOut(DsrollError):
    """A wait (``status --watch --timeout``) ended before what it waited for; nothing was changed."""

    exit_code = 6


class Interrupted(DsrollError):
    """The cluster failed (or the run was stopped) after this run had changed something.

    The rollout state was written to the cluster before each act, so running again
    continues; exit 5 tells CI that, unlike 2, the cluster is no longer as it was.
    """

    exit_code = 5


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, ``kill``): handled as Ctrl-C is, so that cleanup runs and a
    rollout that had changed something prints its summary and exits 5 (``cli/signals.py``)."""
