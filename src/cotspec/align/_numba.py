"""numba when installed; otherwise the same kernels run as plain Python (correct, slower)."""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)

try:
    from numba import njit as _njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    _njit = None
    HAVE_NUMBA = False


def jit(fn: F) -> F:
    """Compile ``fn`` with numba (cached on disk) when it is installed; return it unchanged otherwise."""
    if _njit is None:  # pragma: no cover
        return fn
    return _njit(cache=True, nogil=True)(fn)
