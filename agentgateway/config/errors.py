"""The one error type config problems are reported with: a path into the file and a reason."""


class ConfigError(Exception):
    """A config file that cannot be served. ``path`` uses the file's own key names
    (``binds[0].listeners[0].routes[2].policies.extProc``); ``reason`` says what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)
