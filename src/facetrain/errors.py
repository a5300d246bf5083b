"""The one base class of facetrain's domain errors.

Every error a user can cause — a bad setting, a missing file, data that cannot be used —
is a `FacetrainError` (or a subclass) whose message names the file or setting and the
reason. The command line catches this class once and prints it as one line (exit 2);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FacetrainError(ValueError):
    """A user-facing error: its message is complete and is printed as it is."""
