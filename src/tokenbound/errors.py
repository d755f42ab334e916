"""The one exception type that reaches the user as a one-line message (see cli.main)."""


class TokenboundError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The message must name the offending file or flag and what is wrong with it, e.g.
    ``--val-fraction: must be in [0, 1), got 1.5``. The CLI prints it without a traceback
    (unless ``--debug``) and exits with status 2.
    """


class TimeLimitReached(TokenboundError):
    """A wall-clock limit was spent: the work is checkpointed and can be resumed, but nothing was finalized.

    Time limits only abort (docs/training.md): the same inputs and seed give the same artifact on any machine.
    """
