"""The one exception type the command line turns into a clean message."""


class LshError(Exception):
    """A user-facing error: bad input, missing file, bad config.

    The command line prints its message without a traceback, so the message must
    name the key, file or value at fault and say what is allowed.
    """
