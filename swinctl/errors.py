"""The one base of every error that is the user's to fix: the CLI prints its message as one line and exits 2."""


class UserError(ValueError):
    """Bad input or an unusable environment; the message says what is wrong and how to fix it."""
