"""Errors a user can fix from the command line; the CLI prints them without a traceback."""


class UserInputError(Exception):
    """Bad input (a config name, a value, a file); the message says what is wrong and what to do."""


class RunStopped(Exception):
    """A run stopped before its end on purpose, keeping its last checkpoint; the message says
    why and how to go on. The CLI prints it without a traceback and exits with
    :attr:`exit_code`."""

    exit_code = 1


class NonFiniteError(RunStopped):
    """A loss or gradient norm became NaN or infinite."""


class TerminationRequested(RunStopped):
    """SIGTERM (a scheduler pre-empting the job, ``kill``): checkpoint saved, then stopped."""

    exit_code = 143  # 128 + SIGTERM, as a shell reports a job ended by it
