"""The single exception root of Sluice.

Every error a user can cause derives from :class:`SluiceError` and carries a message that names the
object, file or value involved and says what to do. The CLI prints such errors in one line and exits
non-zero; anything else is a bug and keeps its traceback.

Errors raised while processing an object are either *transient* (worth retrying: a dropped
connection, a lock timeout) or *terminal* (retrying cannot help: a SQL syntax error, a missing
column). Retries consult :func:`is_transient`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SluiceError(Exception):
    """Root of every error Sluice raises on purpose."""


class ConfigError(SluiceError):
    """A project definition (sluice.yaml, Objets.json) is invalid.

    ``source`` is the file, ``line`` the 1-based line the problem is on and ``column`` the 1-based
    column, when known.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = (
                self.source
                + (f":{self.line}" if self.line else "")
                + (f":{self.column}" if self.line and self.column else "")
                + ": "
            )
        return where + self.message


class ValidationFailed(SluiceError):
    """A project has one or more definition problems; ``problems`` lists them all."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        count = len(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the project:\n{lines}")


class ObjectError(SluiceError):
    """Processing one object failed. Subclasses say whether a retry can help."""

    transient = False


class TransientError(ObjectError):
    """A failure that may succeed when tried again (network, lock, timeout)."""

    transient = True


class TerminalError(ObjectError):
    """A failure that retrying cannot fix (bad SQL, missing file, wrong schema)."""

    transient = False


class BusError(SluiceError):
    """The event bus cannot be reached or used."""


class StateError(SluiceError):
    """The state store cannot be reached or holds something unexpected."""


class RunNotFound(StateError):
    """No run matches the id or condition given."""


class BackfillNotFound(StateError):
    """No backfill matches the id given."""


def is_transient(exc: BaseException) -> bool:
    """True when retrying the work that raised ``exc`` may help.

    Sluice's own errors say so explicitly; connection and timeout errors from drivers are transient;
    anything else (a bug in a user function, a type error) is retried too, because the retry budget is
    small and bounded, unless it is marked terminal.
    """
    if isinstance(exc, ObjectError):
        return exc.transient
    return not isinstance(exc, (ConfigError, ValidationFailed))


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` if none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
