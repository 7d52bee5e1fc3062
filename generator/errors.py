"""The errors gapfill raises on purpose.

Every class here is a *user-facing* error: the CLI prints its message as one line and exits
non-zero, without a traceback. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class GapfillError(Exception):
    """Base class. Seen by the person running the CLI as a single line."""


class ConfigError(GapfillError):
    """A setting, config file or environment variable is invalid. Seen by operators."""


class InvalidRowError(GapfillError):
    """A data file has a row that cannot be imported. Seen by whoever supplied the file.

    The message always names the file, the line (1-based; the row number for Parquet) and the
    reason, as ``FILE:LINE: reason``, so editors and CI logs can jump to it.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = one_line(reason)
        super().__init__(f"{one_line(path)}:{line}: {self.reason}")


def one_line(text: str) -> str:
    """``text`` with line breaks, other control characters and lone surrogates escaped, so a
    message quoting hostile input (a field name, a file name) stays one printable line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class InvalidValueError(GapfillError):
    """A value given on the command line (or to a library call) cannot be used, e.g. a run id
    outside the safe alphabet. The message names the option and says what is allowed."""


class DataFileError(GapfillError):
    """A data file as a whole cannot be read (missing, unknown format, empty)."""


class NoGapToFillError(DataFileError):
    """Every gap reaches its target (counting what earlier rounds accepted): nothing to
    generate. A campaign's rounds end on it; a single run reports it as an error."""


class RoundStalledError(GapfillError):
    """A campaign round cannot finish by waiting: work is left that no job will do."""


class ExportError(GapfillError):
    """An export that cannot be written as asked (the message says why); nothing was written."""


class StoreError(GapfillError):
    """The store refused an operation or could not be reached. Seen by reviewers and operators."""


class StoreUnavailableError(StoreError):
    """The Redis/Valkey server cannot be reached or started."""


class StoreUnreachableError(StoreUnavailableError):
    """The store does not answer for now (down, restarting, moved): worth waiting for, unlike
    a refused password or a malformed URL."""


class StoreMovedError(StoreUnreachableError):
    """Something else answers at the bundled server's old address: reconnect through
    ``server.json``, never hand it the password."""


class ItemNotFoundError(StoreError):
    """No item with that id exists under the store's key prefix."""


class LeaseError(StoreError):
    """A decision was made on an item the reviewer does not hold a live lease on.

    Seen by a reviewer whose lease expired or was taken by someone else: their decision was not
    recorded, and the item went (or stays) back in the queue.
    """


class StaleVersionError(StoreError):
    """A decision was based on an out-of-date version of the item (compare-and-set failed)."""


class InvalidTransitionError(StoreError):
    """The item's status does not allow that change (e.g. deciding an item already decided)."""


class BackendError(GapfillError):
    """An LLM backend cannot be created, loaded or reached. Seen by operators starting workers."""


class BackendDeadError(BackendError):
    """The backend can no longer serve (e.g. vLLM's engine process died). The worker stops after
    the failing job (which RQ retries elsewhere) so that its supervisor can restart it."""


class RunSettingsError(GapfillError):
    """A worker cannot score a run as the run was created (its embedding model, its inputs)."""
