"""Errors herd reports to users as one line, without a traceback.

Every failure caused by input (a corrupt file, a bad config, an impossible
request) is raised as a :class:`HerdError` whose message names the input and
what is wrong with it. The CLI prints that message and exits with code 2.

Which one to raise:

- :class:`ConfigError`: something the user chose is invalid, a configuration
  file (a pretraining config, a data recipe), one of its values, a ``--set``
  override, a model config, a preset name, a dtype or sampling parameter.
- :class:`InputError`: data herd was given to read is missing, corrupt or
  malformed, a data file, a token-shard manifest, a tokenizer file, text that
  cannot be tokenized.
- :class:`CheckpointError`: a checkpoint file or directory is missing,
  truncated, corrupt or disagrees with its config.
- :class:`HerdError` itself: any other user-caused failure that fits none of
  them (an impossible request, such as a destination that already exists).

Each stage may subclass one of these for its own errors (``DataInputError``,
``TokenizerError``); callers catch the family, the stage catches its own.
"""

from __future__ import annotations


class HerdError(Exception):
    """A user-facing error: the message names the input and the problem."""


class ConfigError(HerdError):
    """A configuration value or file is invalid; the message names the key or file."""


class InputError(HerdError):
    """Input data (a data file, a manifest, a tokenizer file, text) is missing, corrupt or malformed."""


class CheckpointError(HerdError):
    """A checkpoint file is missing, truncated, corrupt or disagrees with its config."""
