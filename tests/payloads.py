"""Objects that run code when unpickled, each leaving a ``marker`` file behind if it ran: the
probes of the tests that show a loader refuses them before anything runs."""
import os


class OpenPayload:
    """Unpickles to ``open(marker, "w")`` (the global ``builtins.open``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class SystemPayload:
    """Unpickles to ``os.system("touch marker")`` (the global ``posix.system``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalPayload:
    """Unpickles to ``eval("open(marker, 'w')")`` (the global ``builtins.eval``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))
