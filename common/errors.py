"""Errors a user can act on. Scripts print them as one line and exit with `exit_code`."""


class ToolkitError(Exception):
    """A failure with a message meant for the user, not a traceback."""

    exit_code = 1


class InputError(ToolkitError):
    """Bad input data (an audio file, a manifest line): exit 1."""

    exit_code = 1


class SetupError(ToolkitError):
    """The environment, device, model or an option cannot be used as asked: exit 2."""

    exit_code = 2
