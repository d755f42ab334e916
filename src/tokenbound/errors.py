"""The one exception type that reaches the user as a one-line message (see cli.main)."""


class TokenboundError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The message must name the offending file or parameter and what is wrong with it. Library code names the
    Python parameter with ``param`` and keeps the flag out of its words::

        raise TokenboundError("must be in [0, 1), got 1.5", param="val_fraction")

    ``str(e)`` is then ``val_fraction: must be in [0, 1), got 1.5`` for a Python caller, while the CLI prints
    ``cli_message()``: the same words under the flag that set the parameter (``--val-fraction: ...``). The
    CLI prints it without a traceback (unless ``--debug``) and exits with status 2. ``value``, when given, is
    the offending value, stated after the parameter: ``param="out", value=path`` reads ``out PATH: ...`` and on
    the command line ``--out PATH: ...``.
    """

    def __init__(self, message: str, *, param: str | None = None, value: object = None):
        self.message = message
        self.param = param
        self.value = value
        super().__init__(f"{self._subject(param)}: {message}" if param else message)

    def _subject(self, name: str) -> str:
        return name if self.value is None else f"{name} {self.value}"

    def cli_message(self, flags: dict[str, str] | None = None) -> str:
        """The message as the CLI states it: `param` rendered as its flag (``flags`` maps the exceptions,
        otherwise ``--`` + the name with dashes)."""
        if not self.param:
            return str(self)
        flag = (flags or {}).get(self.param) or "--" + self.param.replace("_", "-")
        return f"{self._subject(flag)}: {self.message}"


class TimeLimitReached(TokenboundError):
    """A wall-clock limit was spent: the work is checkpointed and can be resumed, but nothing was finalized.

    Time limits only abort (docs/training.md): the same inputs and seed give the same artifact on any machine.
    """
