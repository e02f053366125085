"""Dispatch machinery of :class:`moe_theory.layers.MoE`: where each assignment goes, and the kernels.

Private module. The layer's docstring says which strategy runs when; this module holds

* :class:`_Plan`: the expert-sorted order of the ``(token, slot)`` assignments (shared by the
  sorted and padded paths), and :func:`_block_layout`: the rows of the padded SwiGLU blocks;
* :class:`_BlockSwiGLU`: SwiGLU experts on those blocks, forward and backward written out;
* :func:`_padding_levels`: the thresholds of the padded path's levels for wide experts;
* :func:`_grouped_mm_supported`: whether :func:`torch.nn.functional.grouped_mm` runs.

The index bookkeeping is a few dozen operations on vectors of ``T k`` integers. On CPU it runs
in NumPy (each call costs microseconds; the same call on a small torch tensor costs tens, and
there are enough of them to matter next to the experts' arithmetic at the theory chapters'
widths), on other devices in torch. Both give the same integers (a test checks it); the
stable sort is a radix sort in NumPy for 16-bit keys.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def _grouped_mm_supported(a: torch.Tensor, weights: tuple[torch.Tensor, ...], widths: tuple[int, ...]) -> bool:
    """Whether :func:`torch.nn.functional.grouped_mm` runs here for these operands (no fallback inside)."""
    if not hasattr(F, "grouped_mm"):
        return False
    if a.device.type == "cpu":
        ok_dtypes = (torch.float32, torch.bfloat16)
    elif a.device.type == "cuda":
        ok_dtypes = (torch.bfloat16,)
        if torch.cuda.get_device_capability(a.device) < (8, 0):
            return False
    else:
        return False
    if a.dtype not in ok_dtypes:
        return False
    size = a.element_size()
    # The CPU kernel wants 16-byte strides and 16-byte-aligned data.
    return all(w * size % 16 == 0 for w in widths) and all(t.data_ptr() % 16 == 0 for t in weights)


_LEVEL_GATHER_ROWS = 16      # padded path: cost of gathering one expert's weights, in buffer rows
_LEVEL_OVERHEAD = 0.03       # ... and of one more level, as a fraction of the T k useful rows


def _padding_levels(loads: list[int], useful_rows: int) -> list[int]:
    """Rank thresholds ``0 = t_0 < ... < t_L = max load`` of the padded path (``L <= 3``).

    With one level every expert gets ``max load`` rows (``N * max load`` in all). With more,
    level ``l`` gives ranks ``[t_l, t_{l+1})`` only to the experts whose load exceeds ``t_l``;
    the thresholds minimise padded rows plus a cost per gathered expert and per level.
    """
    L = np.asarray(loads, dtype=np.int64)
    N, top = L.size, int(L.max()) if L.size else 0
    best_cost, best = float(N * top), [0, max(top, 1)]
    cand = np.unique(L[(L > 0) & (L < top)])
    if cand.size == 0:
        return best
    over = (L[None, :] > cand[:, None]).sum(1)  # experts above each candidate threshold
    extra = _LEVEL_OVERHEAD * useful_rows
    cost2 = N * cand + over * (top - cand + _LEVEL_GATHER_ROWS) + extra
    i = int(np.argmin(cost2))
    if cost2[i] < best_cost:
        best_cost, best = float(cost2[i]), [0, int(cand[i]), top]
    if cand.size > 1:
        t1, t2, n1, n2 = cand[:, None], cand[None, :], over[:, None], over[None, :]
        cost3 = N * t1 + n1 * (t2 - t1 + _LEVEL_GATHER_ROWS) + n2 * (top - t2 + _LEVEL_GATHER_ROWS) + 2 * extra
        cost3 = np.where(t2 > t1, cost3, np.inf)
        a, b = np.unravel_index(int(np.argmin(cost3)), cost3.shape)
        if cost3[a, b] < best_cost:
            best = [0, int(cand[a]), int(cand[b]), top]
    return best


class _NumpyOps:
    """Integer vector operations in NumPy (CPU); results go back as torch tensors without a copy."""

    def __init__(self, device: torch.device):
        self.device = device

    def slot_major(self, indices: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(indices.numpy().T).reshape(-1)

    def argsort_stable(self, e: np.ndarray, n: int) -> np.ndarray:
        # NumPy's stable sort is a radix sort for 16-bit (and smaller) integer keys.
        key = e.astype(np.int16) if n <= np.iinfo(np.int16).max else e
        return np.argsort(key, kind="stable")

    def bincount(self, e: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(e, minlength=n)

    def cumsum(self, a: np.ndarray) -> np.ndarray:
        return np.cumsum(a)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.int64)

    def repeat(self, n: int, counts: np.ndarray) -> np.ndarray:
        return np.repeat(np.arange(n, dtype=np.int64), counts)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def scattered(self, n: int, index: np.ndarray, values: np.ndarray, fill) -> np.ndarray:
        out = np.full(n, fill, dtype=values.dtype)
        out[index] = values
        return out

    def torch(self, a) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))


class _TorchOps:
    """The same operations in torch, on the indices' device (used off the CPU)."""

    def __init__(self, device: torch.device):
        self.device = device

    def slot_major(self, indices: torch.Tensor) -> torch.Tensor:
        return indices.t().reshape(-1)

    def argsort_stable(self, e: torch.Tensor, n: int) -> torch.Tensor:
        return torch.sort(e, stable=True)[1]

    def bincount(self, e: torch.Tensor, n: int) -> torch.Tensor:
        return torch.bincount(e, minlength=n)

    def cumsum(self, a: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(a, 0)

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.device)

    def repeat(self, n: int, counts: torch.Tensor) -> torch.Tensor:
        return torch.repeat_interleave(self.arange(n), counts)

    def where(self, cond, a, b):
        return torch.where(cond, a, b)

    def scattered(self, n: int, index: torch.Tensor, values: torch.Tensor, fill) -> torch.Tensor:
        out = torch.full((n,), fill, dtype=values.dtype, device=self.device)
        out[index] = values
        return out

    def torch(self, a) -> torch.Tensor:
        return a


def _ops(device: torch.device, backend: str | None = None):
    """NumPy on CPU, torch elsewhere (``backend`` forces one: ``"numpy"`` or ``"torch"``, for tests)."""
    if backend is None:
        backend = "numpy" if device.type == "cpu" else "torch"
    return (_NumpyOps if backend == "numpy" else _TorchOps)(device)


class _Plan:
    """Where each (token, slot) assignment goes: the bookkeeping shared by the sorted and padded paths.

    Assignments are listed **slot-major**: ``q = s * T + t`` for token ``t`` and slot ``s``
    (slot 0 holds every token's first choice). A stable sort of the expert ids groups them by
    expert, and within an expert keeps them in ``q`` order; with a capacity ``C`` the first
    ``C`` of each expert are kept (first choices before second choices, earlier tokens first).

    Every attribute is a torch tensor on the indices' device; ``xp`` keeps the array versions
    for :func:`_block_layout` (NumPy arrays on CPU).
    """

    def __init__(self, indices: torch.Tensor, n_experts: int, capacity: int | None, backend: str | None = None):
        T, k = indices.shape
        self.T, self.k, self.S, self.N = T, k, T * k, n_experts
        xp = self.ops = _ops(indices.device, backend)
        e = xp.slot_major(indices)  # (S,) expert of assignment q
        order = xp.argsort_stable(e, n_experts)  # sorted position -> q
        e_sorted = e[order]
        counts = xp.bincount(e, n_experts)  # (N,)
        rank = xp.arange(self.S) - (xp.cumsum(counts) - counts)[e_sorted]  # rank within its expert
        self.capacity = capacity
        if capacity is not None:
            keep_sorted = rank < capacity
            counts = counts.clip(max=capacity)
            kept_q = xp.scattered(self.S, order, keep_sorted, False)
        else:
            keep_sorted = kept_q = None
        self.xp = {"order": order, "e_sorted": e_sorted, "counts": counts, "rank": rank, "keep_sorted": keep_sorted}
        self.e_q = xp.torch(e)  # expert of assignment q (slot-major), (S,)
        self.order, self.e_sorted, self.rank = xp.torch(order), xp.torch(e_sorted), xp.torch(rank)
        self.counts = xp.torch(counts)
        self.token_sorted = xp.torch(order % T)  # token of each sorted assignment
        self.keep_sorted = None if keep_sorted is None else xp.torch(keep_sorted)
        self.kept = None if kept_q is None else xp.torch(kept_q).view(k, T).t()  # (T, k)

    def weights_q(self, weights: torch.Tensor) -> torch.Tensor:
        """Routing weights in ``q`` order, zero on dropped assignments: (S,)."""
        w = weights.t().reshape(-1)
        if self.kept is not None:
            w = w * self.kept.t().reshape(-1).to(w.dtype)
        return w

    def combine(self, out_q: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``y_t = sum_s pi_{t,s} out_{s T + t}``: out_q (S, O) in q order -> (T, O)."""
        w = self.weights_q(weights).view(self.k, self.T, 1)
        return _slot_sum(out_q.view(self.k, self.T, -1) * w)


def _slot_major_weights(logits: torch.Tensor, indices: torch.Tensor, weighting: str,
                        probs: torch.Tensor | None = None) -> torch.Tensor:
    """Routing weights ``pi`` of the active experts, slot-major (k, T), contiguous.

    ``"renormalized"``: softmax over the ``k`` selected logits; ``"softmax"``: the entries of the
    full softmax ``probs`` (computed from ``logits`` when not given). Slot-major because on CPU
    torch's softmax and elementwise kernels are several times slower on a last dimension of size
    ``k``. Row 0 holds each token's largest logit, so the exponents are ``<= 0``.
    """
    if weighting == "renormalized":
        top = logits.gather(-1, indices).t().contiguous()  # (k, T)
        e = torch.exp(top - top[:1].detach())
        return e / e.sum(0)
    p = torch.softmax(logits, dim=-1) if probs is None else probs
    return p.gather(-1, indices).t().contiguous()


def _per_block_row(v_q: torch.Tensor, row_q: torch.Tensor) -> torch.Tensor:
    """A value per assignment ``q`` (S,) spread over the block rows (0 on padding rows, ``row_q = S``)."""
    return torch.cat([v_q, v_q.new_zeros(1)]).index_select(0, row_q)


def _block_layout(plan: _Plan, q: int) -> dict[str, torch.Tensor]:
    """Rows of the padded SwiGLU blocks: every expert's assignments rounded up to blocks of ``q`` rows.

    Returns torch tensors: ``bexp`` (B,) the expert of each block (non-decreasing);
    ``pos`` (S,) the block row of assignment ``q``; ``row_q`` (B q,) the assignment of each
    block row (``S`` on padding rows); ``src`` (B q,) the token of each block row (token 0 on
    padding rows, which get weight 0). With a capacity the last expert gets one more block, so
    the last row is always padding; dropped assignments point at it (weight 0, zero gradient).
    """
    xp, a = plan.ops, plan.xp
    nb = (a["counts"] + (q - 1)) // q  # blocks per expert
    if plan.capacity is not None:
        nb[-1] += 1
    B = int(nb.sum())
    R = B * q
    bexp = xp.repeat(plan.N, nb)
    row = ((xp.cumsum(nb) - nb) * q)[a["e_sorted"]] + a["rank"]  # sorted position -> block row
    order, keep = a["order"], a["keep_sorted"]
    if keep is None:
        row_q = xp.scattered(R, row, order, plan.S)
    else:
        row_q = xp.scattered(R, row[keep], order[keep], plan.S)
        row = xp.where(keep, row, R - 1)
    pos = xp.scattered(plan.S, order, row, 0)
    src = row_q % plan.T
    return {"bexp": xp.torch(bexp), "pos": xp.torch(pos), "row_q": xp.torch(row_q), "src": xp.torch(src)}


_SCRATCH = threading.local()
_SCRATCH_MAX_BYTES = 1 << 26  # larger scratch tensors are allocated fresh (and freed) every time


def _scratch(like: torch.Tensor, slot: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of ``shape`` (like ``like``) whose memory is reused from call to call.

    For temporaries that never leave the function using them (they are consumed before it
    returns): one flat buffer per thread, device, dtype and ``slot``, grown when a larger one is
    needed. On CPU a fresh multi-megabyte tensor costs page faults on first touch (glibc hands
    large freed blocks back to the system), which at the small experts' widths costs as much as
    the arithmetic; reused memory does not. Distinct slots never alias. Contents are garbage.
    """
    numel = math.prod(shape)
    if numel * like.element_size() > _SCRATCH_MAX_BYTES:
        return like.new_empty(shape)
    pool = getattr(_SCRATCH, "pool", None)
    if pool is None:
        pool = _SCRATCH.pool = {}
    key = (like.device, like.dtype, slot)
    buf = pool.get(key)
    if buf is None or buf.numel() < numel:
        buf = pool[key] = like.new_empty(numel + numel // 4)  # headroom: loads vary from step to step
    return buf[:numel].view(shape)


def _slot_sum(t: torch.Tensor) -> torch.Tensor:
    """``t.sum(0)`` for a (k, T, d) tensor, as k - 1 additions when k is small (a faster kernel on CPU).

    For ``k = 1`` it returns the view ``t[0]``: callers pass freshly computed tensors.
    """
    if t.shape[0] > 4:
        return t.sum(0)
    if t.shape[0] == 1:
        return t[0]
    out = torch.add(t[0], t[1])
    for j in range(2, t.shape[0]):
        out.add_(t[j])
    return out


class _BlockSwiGLU(torch.autograd.Function):
    """SwiGLU experts on expert-sorted blocks of ``q`` rows, the routing weights and the gate, as one node.

    Inputs: tokens ``x`` (T, D); the gate's parameters ``gate_w`` (N, D) and ``gate_b`` (N,)
    (or ``None``) and its logits ``g = x gate_w^T + gate_b`` (T, N), computed by the caller
    without gradient (it needed them to route); the expert weights; the active experts
    ``indices`` (T, k) and the same listed slot-major, ``e_q`` (T k,); ``kept`` (T, k) (1/0, or
    ``None``: all kept); the block layout of :func:`_block_layout`; and the ``weighting`` rule of
    the router (:func:`_slot_major_weights`). Outputs: ``y`` (T, O) and
    the logits ``g`` again, now differentiable (what :attr:`Routing.logits` holds, for losses on
    the router such as the load-balancing loss).

    Forward: the routing weights ``w`` (kept slot-major, (k, T)) from ``g`` (softmax over the
    selected logits, or the full softmax's entries), zero on dropped slots; ``xb = x[src]``
    viewed as ``(B, q, D)`` blocks (block ``b`` belongs to expert ``bexp[b]``, whose weights are
    gathered per block); then, feature-major within a block, ``[gate; up] = W13 xb^T``
    (``(B, 2H, q)``, one :func:`torch.bmm`), ``h = silu(gate) * up``, ``out = h^T W2^T``
    (``(B, q, O)``, one :func:`torch.bmm`), and ``y_t = sum_s w_{t,s} out[pos[sT+t]]``. The
    feature-major layout keeps ``gate`` and ``up`` as contiguous runs of ``H q`` values.

    Backward computes the gradients by hand from one saved layout: the output gradient is
    gathered into the block rows (``gy[src] * w_row``), the input gradient gathered back by
    ``pos`` and summed over slots (no scatter), the weight gradients summed per expert with
    :meth:`torch.Tensor.index_add_` over the blocks (deterministic on CPU). The gate's gradient
    comes from ``dL/dw_{t,s} = <out, gy_t>`` through the softmax; with renormalised weights and
    no gradient arriving at the logits output, it has only ``k`` nonzeros per token, and the
    gate's matmul backward is done sparsely: ``dL/dx_t += sum_s c_{t,s} W_{i_{t,s}}``, and
    ``dL/dW_i`` rides as one more row of the per-block ``dL/dW13`` matmul. Otherwise the dense
    logits gradient goes through two matmuls, as autograd would do. At these widths the
    elementwise passes are bound by memory traffic, and every separate autograd node costs tens
    of microseconds on a 2-core CPU, so the function keeps few large temporaries (``silu(gate)``
    is saved; the gradient of ``gate`` comes from torch's fused ``silu_backward``, in place;
    the backward's temporaries live in reused scratch memory, :func:`_scratch`). Padding rows
    read token 0 with weight 0, so they contribute nothing and get no gradient; dropped slots
    point at a padding row.
    """

    @staticmethod
    def forward(ctx, x, gate_w, gate_b, g, w13, w2, indices, e_q, kept, src, pos, row_q, bexp, weighting, q):
        T, D = x.shape
        k = indices.shape[1]
        B = bexp.shape[0]
        H = w2.shape[2]
        # Routing weights slot-major, (k, T) = q order
        p = torch.softmax(g, dim=-1) if weighting == "softmax" else None
        w = _slot_major_weights(g, indices, weighting, p)
        kept = None if kept is None else kept.t()  # (k, T)
        wq = (w if kept is None else w * kept).reshape(-1)  # (S,) in q = s T + t order
        w13b = w13.index_select(0, bexp)  # (B, 2H, D)
        w2b = w2.index_select(0, bexp)  # (B, O, H)
        xb = x.index_select(0, src).view(B, q, D)
        gu = torch.bmm(w13b, xb.transpose(1, 2))  # (B, 2H, q): feature-major
        a = F.silu(gu[:, :H])  # silu(gate), (B, H, q)
        h = a * gu[:, H:]  # times up
        out = torch.bmm(h.transpose(1, 2), w2b.transpose(1, 2),
                        out=_scratch(x, "out", (B, q, w2.shape[1])))  # (B, q, O): row-major
        out_q = out.view(B * q, -1).index_select(0, pos).view(k, T, -1)
        y = _slot_sum(out_q * wq.view(k, T, 1))
        w_row = _per_block_row(wq, row_q)  # weight of each block row
        ctx.save_for_backward(x, gate_w, xb, gu, a, h, w13b, w2b, out_q, w_row, src, pos, row_q, bexp, indices,
                              e_q, w, p, kept)
        ctx.sizes = (T, D, H, q, k, w13.shape[0], g.shape[1])
        ctx.weighting = weighting
        ctx.set_materialize_grads(False)  # no gradient at the logits output arrives as None
        return y, g.view_as(g)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, gg):
        (x, gate_w, xb, gu, a, h, w13b, w2b, out_q, w_row, src, pos, row_q, bexp, indices,
         e_q, w, p, kept) = ctx.saved_tensors
        T, D, H, q, k, N, n_logits = ctx.sizes
        B = bexp.shape[0]
        want_x, want_gw, want_gb, want_g = ctx.needs_input_grad[:4]
        want_w13, want_w2 = ctx.needs_input_grad[4:6]
        want_gate = want_x or want_gw or want_gb or want_g
        if gy is None:  # only the logits output is used: the gate's matmul backward alone
            gy = out_q.new_zeros(T, out_q.shape[-1])
        gy = gy.contiguous()
        O = gy.shape[1]
        # dL/dlogits from the routing weights: (k, T) slot-major when sparse, else dense (T, N)
        c = dense = None
        if want_gate and not (ctx.weighting == "renormalized" and k == 1):  # else w == 1: no gradient
            g_w = (out_q * gy).sum(-1)  # dL/dw (k, T)
            if kept is not None:
                g_w = g_w * kept
            if ctx.weighting == "renormalized":  # w = softmax(g[indices])
                c = (g_w - (g_w * w).sum(0)).mul_(w)
            else:  # w = softmax(g)[indices]
                g_p = gy.new_zeros(T, n_logits).scatter_(1, indices, g_w.t())
                dense = g_p.sub_((g_w * w).sum(0)[:, None]).mul_(p)
        # The sparse route needs the gate's parameters, no other gradient at the logits, and every
        # slot in a block row (a dropped slot still has a gradient through the normalisation).
        if c is not None and not (gate_w is not None and kept is None and not want_g and gg is None):
            dense = gy.new_zeros(T, n_logits) if dense is None else dense
            dense.scatter_add_(1, indices, c.t())
            c = None
        if gg is not None:  # a loss on the logits output itself (e.g. load balancing)
            dense = gg.clone() if dense is None else dense.add_(gg)
        sparse = c is not None and (want_x or want_gw or want_gb)
        # Every temporary below is consumed before returning: scratch memory, reused across calls.
        g_out = torch.index_select(gy, 0, src, out=_scratch(gy, "g_out", (B * q, O)))
        g_out = g_out.mul_(w_row[:, None]).view(B, q, O)  # (B, q, O)
        g_h = torch.bmm(w2b.transpose(1, 2), g_out.transpose(1, 2), out=_scratch(gy, "g_h", (B, H, q)))
        g_w2 = None
        if want_w2:
            g_w2b = torch.bmm(g_out.transpose(1, 2), h.transpose(1, 2),
                              out=_scratch(gy, "g_w2b", (B, O, H)))  # (B, O, H), the parameter's layout
            g_w2 = gy.new_zeros(N, O, H).index_add_(0, bexp, g_w2b)
        # Three elementwise passes, written into one buffer: d/d up = g_h silu(gate), d/d gate =
        # silu'(gate) (g_h up) by torch's fused silu backward, in place. With the sparse gate
        # gradient, one more row per block holds c of each block row, so that the dL/dW13 matmul
        # also gives the gate's per-block dL/dW.
        rows = 2 * H + (1 if sparse and want_gw else 0)
        g_gu = _scratch(gy, "g_gu", (B, rows, q))
        g_gate = g_gu[:, :H]
        torch.mul(g_h, a, out=g_gu[:, H:2 * H])
        torch.mul(g_h, gu[:, H:], out=g_gate)
        torch.ops.aten.silu_backward.grad_input(g_gate, gu[:, :H], grad_input=g_gate)
        if rows > 2 * H:  # c of each block row (0 on padding rows)
            g_gu[:, 2 * H].copy_(_per_block_row(c.reshape(-1), row_q).view(B, q))
        g_x = g_w13 = g_gw = g_gb = g_g = None
        if want_x:
            g_xb = torch.bmm(g_gu[:, :2 * H].transpose(1, 2), w13b, out=_scratch(gy, "g_xb", (B, q, D)))
            g_x = _slot_sum(g_xb.view(B * q, D).index_select(0, pos).view(k, T, D))
            if sparse:  # sum_s c_{t,s} W_{i_{t,s}} (g_x is a fresh tensor)
                g_x.add_(_slot_sum(gate_w.index_select(0, e_q).view(k, T, D) * c[:, :, None]))
        if want_w13 or rows > 2 * H:
            g_ext = torch.bmm(g_gu, xb, out=_scratch(gy, "g_w13b", (B, rows, D)))  # (B, 2H [+1], D)
            # one per-expert sum over contiguous blocks (a strided source is far slower), then split
            acc = gy.new_zeros(N, rows, D).index_add_(0, bexp, g_ext)
            if want_w13:
                g_w13 = acc if rows == 2 * H else acc[:, :2 * H].contiguous()
            if rows > 2 * H:
                g_gw = acc[:, 2 * H].contiguous()
        if sparse and want_gb:
            g_gb = torch.bincount(e_q, weights=c.reshape(-1), minlength=N).to(gy.dtype)
        if dense is not None and gate_w is not None:
            if want_x:
                g_x = g_x + dense @ gate_w if g_x is not None else dense @ gate_w
            if want_gw:
                g_gw = dense.t() @ x
            if want_gb:
                g_gb = dense.sum(0)
        if want_g:
            g_g = dense if dense is not None else gy.new_zeros(T, n_logits)
        # The gate's parameters get zeros, not None, when the weights carry no gradient (top-1
        # renormalised): the same as autograd through the weights would give.
        if want_gw and g_gw is None:
            g_gw = gate_w.new_zeros(gate_w.shape)
        if want_gb and g_gb is None:
            g_gb = gy.new_zeros(N)
        return g_x, g_gw, g_gb, g_g, g_w13, g_w2, None, None, None, None, None, None, None, None, None
