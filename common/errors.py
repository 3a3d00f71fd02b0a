"""Errors a user can act on. Scripts print them as one line and exit with `exit_code`."""


class ToolkitError(Exception):
    """A failure with a message meant for the user, not a traceback."""

    exit_code = 1
    label = "error"  # the word the one-line message starts with


class InputError(ToolkitError):
    """Bad input data (an audio file, a manifest line): exit 1."""

    exit_code = 1


class SetupError(ToolkitError):
    """The environment, device, model or an option cannot be used as asked: exit 2."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit), raised like Ctrl-C's KeyboardInterrupt so that the
    same cleanup runs; per-file isolation (`except Exception`) never swallows either."""


class RunStopped(ToolkitError):
    """A run ended early (a signal or an error) after keeping its finished records."""

    label = "interrupted"

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
