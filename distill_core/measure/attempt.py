"""A measurement that fails is recorded with its reason, never fatal to the run."""
from __future__ import annotations

import traceback


def unavailable(exc: BaseException) -> dict:
    return {"available": False, "reason": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}


def attempt(fn, *args, **kwargs):
    """fn(*args, **kwargs), or {"available": False, "reason": ..., "where": ...} if it raised."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        out = unavailable(exc)
        out["where"] = traceback.extract_tb(exc.__traceback__)[-1].name if exc.__traceback__ else ""
        return out
