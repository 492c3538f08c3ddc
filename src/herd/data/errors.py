"""The errors of the data stage: bad data inputs, and bad recipes."""

from __future__ import annotations

from herd.errors import ConfigError, InputError


class DataInputError(InputError):
    """A data file, manifest, marker or step argument is missing, corrupt or invalid; the message names it."""


class RecipeError(DataInputError, ConfigError):
    """A recipe file, one of its values or a ``--set`` override of it is invalid.

    A recipe is configuration, so this is a :class:`ConfigError`; it stays a
    :class:`DataInputError` too, as recipe errors were before herd had one error
    family, so ``except DataInputError`` clauses keep catching them.
    """
