"""One exception hierarchy; the CLI maps each class to an exit code in one place."""

from __future__ import annotations


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


class SandboxError(DsrollError):
    """The local sandbox cluster could not be built or started."""
