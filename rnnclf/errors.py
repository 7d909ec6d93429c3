"""The one error type the library raises for problems the user can fix (bad config, bad data, bad file).

The CLI turns a RnnclfError into one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class RnnclfError(Exception):
    """A user-fixable problem; the message names what is wrong and where (file, line, key)."""
