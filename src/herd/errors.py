"""Errors herd reports to users as one line, without a traceback.

Every failure caused by input (a corrupt file, a bad config, an impossible
request) is raised as a :class:`HerdError` whose message names the input and
what is wrong with it. The CLI prints that message and exits with code 2.
"""

from __future__ import annotations


class HerdError(Exception):
    """A user-facing error: the message names the input and the problem."""


class ConfigError(HerdError):
    """A configuration value or file is invalid."""


class CheckpointError(HerdError):
    """A checkpoint file is missing, truncated, corrupt or disagrees with its config."""
