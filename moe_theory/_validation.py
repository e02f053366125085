"""Argument checks shared by every public function of :mod:`moe_theory`.

Each check raises :class:`TypeError` (wrong kind of object) or :class:`ValueError`
(right kind, wrong value) with a message that names the argument, states what was
expected and shows what was given, e.g.::

    k must satisfy 1 <= k <= n_experts (= 8), got k=9

Tests match on these messages, so keep their wording stable.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Sequence

import numpy as np
import torch

__all__ = [
    "check_int",
    "check_positive_int",
    "check_k",
    "check_real",
    "check_positive_real",
    "check_probability",
    "check_choice",
    "check_bool",
    "check_tensor",
    "check_array",
    "check_finite",
    "check_rng",
    "check_seed",
    "check_dtype",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as ``int`` if it is an integer in ``[minimum, maximum]``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and maximum is not None and not (minimum <= value <= maximum):
        raise ValueError(f"{name} must satisfy {minimum} <= {name} <= {maximum}, got {name}={value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {name}={value}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as ``int`` if it is an integer >= 1."""
    return check_int(name, value, minimum=1)


def check_k(k: Any, n_experts: int, *, name: str = "k", n_name: str = "n_experts") -> int:
    """Check the number of active experts: ``1 <= k <= n_experts``."""
    if not _is_int(k):
        raise TypeError(f"{name} must be an integer, got {type(k).__name__} {k!r}")
    k = int(k)
    if not 1 <= k <= n_experts:
        raise ValueError(f"{name} must satisfy 1 <= {name} <= {n_name} (= {n_experts}), got {name}={k}")
    return k


def check_real(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
               allow_equal_min: bool = True) -> float:
    """Return ``value`` as ``float`` if it is a finite real number in range."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value}")
    if minimum is not None:
        bad = value < minimum if allow_equal_min else value <= minimum
        if bad:
            op = ">=" if allow_equal_min else ">"
            raise ValueError(f"{name} must be {op} {minimum}, got {name}={value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {name}={value}")
    return value


def check_positive_real(name: str, value: Any) -> float:
    """Return ``value`` as ``float`` if it is a finite real number > 0."""
    return check_real(name, value, minimum=0.0, allow_equal_min=False)


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` as ``float`` if it lies in ``[0, 1]``."""
    return check_real(name, value, minimum=0.0, maximum=1.0)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Check that ``value`` is one of the strings in ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {name}={value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Check that ``value`` is a ``bool``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _shape_str(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _check_shape(name: str, shape: tuple[int, ...], expected: Sequence[Any] | None, ndim: int | None,
                 min_ndim: int | None) -> None:
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {_shape_str(shape)}")
    if min_ndim is not None and len(shape) < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {_shape_str(shape)}")
    if expected is not None:
        # ``expected`` lists trailing sizes; None (or "...") matches any size.
        exp = tuple(expected)
        if len(shape) < len(exp) or any(
            e is not None and e != "..." and e != s for e, s in zip(exp[::-1], shape[::-1])
        ):
            inner = ", ".join("*" if e in (None, "...") else str(e) for e in exp)
            raise ValueError(f"{name} must have shape (..., {inner}), got shape {_shape_str(shape)}")


def check_tensor(name: str, value: Any, *, shape: Sequence[Any] | None = None, ndim: int | None = None,
                 min_ndim: int | None = None, finite: bool = True, floating: bool = True) -> torch.Tensor:
    """Check that ``value`` is a torch tensor of the expected (trailing) shape.

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    shape : sequence, optional
        Expected trailing sizes; ``None`` entries match any size.
    ndim, min_ndim : int, optional
        Exact or minimum number of dimensions.
    finite : bool
        Reject NaN and infinite entries.
    floating : bool
        Require a floating-point dtype.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    _check_shape(name, tuple(value.shape), shape, ndim, min_ndim)
    if floating and not torch.is_floating_point(value):
        raise TypeError(f"{name} must have a floating-point dtype, got dtype {value.dtype}")
    if finite and value.numel() and not _all_finite(value):
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return value


def _all_finite(value: torch.Tensor) -> bool:
    """Whether every entry of ``value`` is finite.

    A finite sum proves it with one cheap reduction (in NumPy on CPU, several times faster than
    torch's for a small tensor); only a sum that is not finite (an inf or NaN entry, or an
    overflow) makes it look at every entry.
    """
    if value.device.type == "cpu" and value.dtype in (torch.float32, torch.float64):
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(value.detach().numpy().sum()):
                return True
    elif bool(torch.isfinite(value.sum())):
        return True
    return bool(torch.isfinite(value).all())


def check_array(name: str, value: Any, *, shape: Sequence[Any] | None = None, ndim: int | None = None,
                min_ndim: int | None = None, finite: bool = True, dtype: Any = float) -> np.ndarray:
    """Convert ``value`` to a numpy array and check its shape and values.

    Accepts lists, numpy arrays and (CPU-copied) torch tensors.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be array-like of numbers, got {type(value).__name__}")
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of numbers, got {type(value).__name__}") from exc
    _check_shape(name, arr.shape, shape, ndim, min_ndim)
    if finite and arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return arr


def check_finite(name: str, value: torch.Tensor | np.ndarray) -> None:
    """Raise if a tensor or array has NaN or infinite entries."""
    ok = bool(torch.isfinite(value).all()) if isinstance(value, torch.Tensor) else bool(np.all(np.isfinite(value)))
    if not ok:
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")


def check_seed(name: str, value: Any) -> int:
    """Check a seed: a non-negative integer."""
    return check_int(name, value, minimum=0)


def check_seeds(name: str, seeds: Any) -> list[int]:
    """A non-empty sequence of seeds (each :func:`check_seed`), as a list."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {type(seeds).__name__}")
    out = [check_seed(name, s) for s in seeds]
    if not out:
        raise ValueError(f"{name} must hold at least one seed, got an empty sequence")
    return out


def per_seed(name: str, value: Any, n: int) -> list:
    """``value`` for each of ``n`` seeds: one number repeated, or a sequence of exactly ``n``."""
    if np.isscalar(value):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} must be one number or one per seed ({n}), got {len(value)} values")
    return value


def check_rng(rng: Any, *, name: str = "rng") -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from a seed or a Generator.

    ``None`` is refused on purpose: every random function in the library takes an
    explicit seed so the same call gives the same numbers.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if _is_int(rng):
        return np.random.default_rng(check_seed(name, rng))
    raise TypeError(f"{name} must be a non-negative int seed or a numpy.random.Generator, "
                    f"got {type(rng).__name__} {rng!r}")


def check_dtype(name: str, value: Any) -> torch.dtype | None:
    """Check a torch floating dtype (``None`` allowed, meaning the default)."""
    if value is None:
        return None
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise TypeError(f"{name} must be a floating torch.dtype such as torch.float32, got {value!r}")
    return value
