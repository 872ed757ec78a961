"""Errors a user can fix from the command line; the CLI prints them without a traceback."""


class UserInputError(Exception):
    """Bad input (a config name, a value, a file); the message says what is wrong and what to do."""
