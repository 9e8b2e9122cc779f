"""One small tree of exceptions. Each subclasses the builtin it resembles, so callers can catch either.

Messages are one line: they name the bad value and say what to do instead. The CLI prints ``str(exc)`` and exits 2.
"""
from __future__ import annotations


class EmbstoreError(Exception):
    """Base of every error embstore raises on purpose."""


class InputError(EmbstoreError, ValueError):
    """The user's input (a file, a column, an option) cannot be used as given."""


class ImageTooLargeError(InputError):
    """An image has more pixels than embstore decodes (``EMBSTORE_MAX_PIXELS``): seen from its header, undecoded."""


class NotFoundError(EmbstoreError, KeyError):
    """A named collection, space, head or file does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EncoderError(EmbstoreError, RuntimeError):
    """An encoder cannot be loaded or cannot embed this kind of input."""


class SpaceMismatchError(EmbstoreError, ValueError):
    """A head or a query meets a space made by a different encoder."""


class LabelError(EmbstoreError, ValueError):
    """Labels cannot train or score a head (missing, a single class, unknown at predict time)."""


class StoreLockedError(EmbstoreError, RuntimeError):
    """Another process holds the store's writer lock."""


class StoreWriteError(EmbstoreError, OSError):
    """A file of the store cannot be written (disk full, no permission, a read-only disk): nothing was committed,
    and the temporary file is gone."""


class DamagedStoreError(EmbstoreError, RuntimeError):
    """A file the manifest names is missing or cannot be read."""


class ReadOnlyError(EmbstoreError, PermissionError):
    """A statement would change data while the store is opened read-only."""
