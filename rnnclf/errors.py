"""The one error type the library raises for problems the user can fix (bad config, bad data, bad file).

The CLI turns a RnnclfError into one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class RnnclfError(Exception):
    """A user-fixable problem; the message names what is wrong and where (file, line, key)."""


class MissingExtra(RnnclfError):
    """An optional feature whose package is not installed; the message says which extra installs it."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(f"{feature} needs {package}, which is not installed: pip install 'rnnclf[{extra}]'")
        self.package = package
        self.extra = extra
