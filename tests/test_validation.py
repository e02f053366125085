"""The argument checks: every message names the argument, the expected value and what was given."""

import numpy as np
import pytest
import torch

from moe_theory import _validation as v


def test_check_k_accepts_range_and_names_bounds():
    assert v.check_k(3, 8) == 3
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= n_experts \(= 8\), got k=9"):
        v.check_k(9, 8)
    with pytest.raises(ValueError, match=r"got k=0"):
        v.check_k(0, 8)
    with pytest.raises(TypeError, match="k must be an integer, got float"):
        v.check_k(2.0, 8)


def test_check_positive_int_rejects_bool_zero_and_float():
    assert v.check_positive_int("n", np.int64(4)) == 4
    with pytest.raises(ValueError, match="n must be >= 1, got n=0"):
        v.check_positive_int("n", 0)
    with pytest.raises(TypeError, match="n must be an integer, got bool"):
        v.check_positive_int("n", True)
    with pytest.raises(TypeError, match="n must be an integer, got str"):
        v.check_positive_int("n", "3")


def test_check_real_rejects_nan_inf_and_out_of_range():
    assert v.check_real("lr", 0.5, minimum=0.0) == 0.5
    with pytest.raises(ValueError, match="lr must be finite, got lr=nan"):
        v.check_real("lr", float("nan"))
    with pytest.raises(ValueError, match="lr must be > 0.0, got lr=0.0"):
        v.check_positive_real("lr", 0.0)
    with pytest.raises(ValueError, match=r"p must be <= 1.0, got p=1.5"):
        v.check_probability("p", 1.5)
    with pytest.raises(TypeError, match="lr must be a real number, got str"):
        v.check_real("lr", "0.1")


def test_check_tensor_shape_dtype_and_finiteness():
    x = torch.zeros(3, 4)
    assert v.check_tensor("x", x, shape=(4,)) is x
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 5\), got shape \(3, 4\)"):
        v.check_tensor("x", x, shape=(5,))
    with pytest.raises(ValueError, match="x must have 3 dimensions, got shape"):
        v.check_tensor("x", x, ndim=3)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        v.check_tensor("x", np.zeros(3))
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        v.check_tensor("x", torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="x must contain only finite values"):
        v.check_tensor("x", torch.tensor([1.0, float("nan")]))


def test_check_array_converts_and_validates():
    a = v.check_array("W", [[1, 2], [3, 4]], ndim=2)
    assert a.dtype == float and a.shape == (2, 2)
    with pytest.raises(ValueError, match="W must contain only finite values"):
        v.check_array("W", [1.0, np.inf])
    with pytest.raises(TypeError, match="W must be array-like of numbers, got str"):
        v.check_array("W", "abc")
    with pytest.raises(ValueError, match=r"W must have shape \(\.\.\., 3\), got shape \(2, 2\)"):
        v.check_array("W", np.zeros((2, 2)), shape=(3,))


def test_check_rng_seed_generator_and_refusals():
    g = v.check_rng(5)
    assert isinstance(g, np.random.Generator)
    assert g.random() == np.random.default_rng(5).random()
    same = np.random.default_rng(1)
    assert v.check_rng(same) is same
    with pytest.raises(TypeError, match="rng must be a non-negative int seed or a numpy.random.Generator"):
        v.check_rng(None)
    with pytest.raises(ValueError, match="rng must be >= 0, got rng=-1"):
        v.check_rng(-1)


def test_check_choice_bool_and_dtype():
    assert v.check_choice("router", "topk", ("topk", "softmax")) == "topk"
    with pytest.raises(ValueError, match=r"router must be one of \('topk', 'softmax'\), got router='top2'"):
        v.check_choice("router", "top2", ("topk", "softmax"))
    with pytest.raises(TypeError, match="flag must be a bool, got int"):
        v.check_bool("flag", 1)
    assert v.check_dtype("dtype", torch.float64) is torch.float64
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        v.check_dtype("dtype", torch.int32)


def test_check_finite_for_tensor_and_array():
    v.check_finite("g", np.ones(3))
    with pytest.raises(ValueError, match="g must contain only finite values"):
        v.check_finite("g", torch.tensor([float("inf")]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_check_tensor_finite_check_survives_an_overflowing_sum_and_finds_every_bad_entry(dtype):
    # The check sums first (one cheap reduction); a sum that overflows must not reject finite entries.
    big = torch.finfo(dtype).max
    assert v.check_tensor("x", torch.tensor([big, big, big], dtype=dtype)) is not None
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="x must contain only finite values"):
            v.check_tensor("x", torch.tensor([1.0, bad, 2.0], dtype=dtype))
        with pytest.raises(ValueError, match="x must contain only finite values"):
            v.check_tensor("x", torch.tensor([big, big, bad], dtype=dtype))
