"""The one tolerance helper of the test-suite.

``assert_close(actual, expected)`` compares by *relative* error
``‖actual − expected‖ / max(‖expected‖, atol)`` with per-dtype defaults, and prints both
values (and the error) on failure. Works for torch tensors, numpy arrays, sympy numbers and
Python scalars.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: default relative tolerances by dtype; float64 compares to round-off.
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4, np.dtype(np.float16): 1e-2}
#: floor of the denominator, so that an expected 0 compares absolutely.
ATOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6, np.dtype(np.float16): 1e-3}


def to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.float32":
            return x.numpy().astype(np.float32)
        return x.numpy()
    if hasattr(x, "tolist") and not isinstance(x, np.ndarray):  # sympy Matrix
        x = np.array(x.tolist(), dtype=float)
    arr = np.asarray(x)
    if arr.dtype == object:
        arr = arr.astype(float)
    return arr


def _dtype_of(*xs: np.ndarray) -> np.dtype:
    kinds = [x.dtype for x in xs if np.issubdtype(x.dtype, np.floating)]
    if not kinds:
        return np.dtype(np.float64)
    # the least precise float present sets the tolerance
    return max(kinds, key=lambda d: float(np.finfo(d).eps))


def relative_error(actual: Any, expected: Any, atol: float = 0.0) -> float:
    a, e = to_numpy(actual).astype(np.float64), to_numpy(expected).astype(np.float64)
    return float(np.linalg.norm(a - e) / max(float(np.linalg.norm(e)), atol, 1e-300))


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "",
) -> None:
    """Assert ``‖actual − expected‖ ≤ rtol · max(‖expected‖, atol)`` (Frobenius norms)."""
    a, e = to_numpy(actual), to_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what or 'value'}: shape {a.shape} != expected shape {e.shape}")
    dt = _dtype_of(a, e)
    rtol = RTOL.get(dt, 1e-10) if rtol is None else rtol
    atol = ATOL.get(dt, 1e-12) if atol is None else atol
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
        raise AssertionError(f"{what or 'value'}: non-finite entries\nactual={a}\nexpected={e}")
    err = relative_error(a, e, atol)
    if not err <= rtol:
        raise AssertionError(
            f"{what or 'value'}: relative error {err:.3e} > rtol {rtol:.1e} ({dt})\n"
            f"actual=\n{a}\nexpected=\n{e}"
        )


#: above this size a post-adaptation loss means the inner loop diverged (step size too
#: large for the drawn weights): values like 1e180 differ by cancellation, not by the code
#: under test, so a property test draws again instead of comparing them.
DIVERGED = 1e8


def assume_not_diverged(*values: Any) -> None:
    """``hypothesis.assume`` that every value is finite and at most :data:`DIVERGED` in size
    (inside a property test: a diverged draw is replaced); in a test with fixed inputs a
    diverged value is an error of the test's own set-up, so it fails."""
    from hypothesis import assume
    from hypothesis.control import currently_in_test_context

    for v in values:
        arr = to_numpy(v).astype(np.float64)
        ok = bool(np.all(np.isfinite(arr))) and float(np.max(np.abs(arr), initial=0.0)) <= DIVERGED
        if currently_in_test_context():
            assume(ok)
        else:
            assert ok, f"diverged (|value| > {DIVERGED:g} or not finite): fix the test's inputs"
