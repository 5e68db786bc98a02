"""The one base class for "the input is wrong": the CLI prints these as one line naming the fix, exit status 2.

Any other exception is a fault in speechpeft or a library it calls: the CLI says so and how to see the traceback.
Import-light on purpose: the CLI imports it before any command runs.

Each subclass also derives from the builtin that callers already catch (`except ValueError` keeps working).
"""

from __future__ import annotations


class UserError(Exception):
    """The input is wrong (a flag, a path, a dataset, an installed program); the message names the fix."""


class InputError(UserError, ValueError):
    """A value the user gave cannot work: a flag out of range, a split or name that does not exist."""


class MissingInputError(UserError, FileNotFoundError):
    """A file, directory or program the user named or needs is not there."""


class OutputExistsError(UserError, FileExistsError):
    """An output directory already holds something speechpeft will not overwrite."""
