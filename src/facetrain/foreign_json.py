"""JSON that came from elsewhere (a model file's record, a spec, a photo's sidecar): read
so that whatever it holds ends as a ValueError that says why, never as a traceback."""

from __future__ import annotations

import json


def loads(data: str | bytes) -> object:
    """`json.loads`, its failures one ValueError: not UTF-8, not JSON, or nested so deep
    (arrays in arrays, thousands deep) that the parser runs out of stack."""
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None
    except RecursionError:
        raise ValueError("nested too deep to be read") from None
