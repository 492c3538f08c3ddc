"""The error raised for unreadable data inputs and invalid data configs."""

from __future__ import annotations

from herd.errors import InputError


class DataInputError(InputError):
    """A data file, recipe or step argument is missing, corrupt or invalid; the message names it."""
