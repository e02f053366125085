"""Kernels of the MoE layer's fast paths: the code that is fast rather than plain.

Private module, used by :mod:`moe_theory.layers` and :mod:`moe_theory._dispatch`. It holds

* :func:`fast_topk_indices`: the active sets ``S_k(g)`` exactly as a stable descending sort
  gives them (ties to the smaller index), without sorting;
* :class:`_BlockSwiGLU`: SwiGLU experts on expert-sorted blocks of rows, the routing weights'
  and the gate's backward included, forward and backward written out, with its reused scratch
  memory (:func:`_scratch`) and :func:`_slot_sum`;
* :func:`_grouped_mm_supported` and :func:`_ragged_bmm`: the grouped matmul of the sorted path,
  or its stand-in where :func:`torch.nn.functional.grouped_mm` cannot run.

Nothing here imports the rest of the library.
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


_ITERATIVE_TOPK_MAX_K = 4


def fast_topk_indices(g: torch.Tensor, k: int) -> torch.Tensor:
    """``torch.sort(g, -1, descending=True, stable=True).indices[..., :k]``, faster (no gradient).

    A full sort costs ``O(N log N)`` per token and is slow on CPU for ``N = 64``. For
    ``k <= 4`` the indices are found by ``k`` rounds of "first index of the largest remaining
    logit" (:func:`torch.max` and :func:`numpy.argmax`, used on CPU, return the first maximal
    index), which is the stable order exactly; for larger ``k`` by :func:`torch.topk` on
    ``k + 1`` entries when these are all distinct (checked), and by the stable sort when they
    are not. ``g`` is left unchanged bit for bit.
    """
    N = g.shape[-1]
    if k < N and g.numel():
        # k rounds of "first index of the largest remaining logit", masking each pick with -inf:
        # exactly the stable descending order, unless a later round's maximum is itself -inf
        # (then the mask is ambiguous, and the stable sort below decides).
        if k <= _ITERATIVE_TOPK_MAX_K and g.device.type == "cpu" and g.dtype in (torch.float32, torch.float64):
            # In NumPy: np.argmax also returns the first maximal index, and on CPU it is about
            # twice as fast as torch.max with indices over a short last axis.
            # The picks are masked in place and restored bit for bit afterwards (no copy of g).
            flat = g.numpy().reshape(-1, N)  # a view of g, or a copy if g's strides need one
            if not flat.flags.c_contiguous:  # e.g. overlapping rows (as_strided views): mask a copy
                flat = flat.copy()
            rows = np.arange(flat.shape[0])
            picked, saved, ambiguous = [flat.argmax(-1)], [], False
            try:
                for _ in range(k - 1):
                    saved.append(flat[rows, picked[-1]])
                    flat[rows, picked[-1]] = -np.inf
                    picked.append(flat.argmax(-1))
                    if np.isneginf(flat[rows, picked[-1]]).any():
                        ambiguous = True
                        break
            finally:
                for index, value in zip(reversed(picked[:len(saved)]), reversed(saved)):
                    flat[rows, index] = value
            if not ambiguous:
                return torch.from_numpy(np.stack(picked, -1).reshape(*g.shape[:-1], k))
        elif k <= _ITERATIVE_TOPK_MAX_K:
            picked, rest, ambiguous = [], g, False
            for j in range(k):
                value, index = rest.max(dim=-1, keepdim=True)
                picked.append(index)
                if j > 0:
                    ambiguous = ambiguous or bool(torch.isneginf(value).any())
                if j + 1 < k:
                    rest = rest.scatter(-1, index, -math.inf)
            if not ambiguous:
                return torch.cat(picked, -1) if k > 1 else picked[0]
        values, indices = torch.topk(g, k + 1, dim=-1, largest=True, sorted=True)
        if not bool((values[..., 1:] == values[..., :-1]).any()):  # k + 1 distinct: no tie to break
            return indices[..., :k]
    return torch.sort(g, dim=-1, descending=True, stable=True)[1][..., :k]


def _ragged_bmm(counts: torch.Tensor, e_sorted: torch.Tensor, rows: int):
    """Grouped matmul of ragged groups through a padded bmm (where grouped_mm cannot run).

    ``counts`` (N,) rows per group, ``e_sorted`` (rows,) the group of each row (non-decreasing).
    Returns ``gmm(a, w)``: row ``r`` of ``a`` (rows, d) times ``w[e_sorted[r]].T``.
    """
    N = counts.shape[0]
    C = max(1, int(counts.max()))
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(rows, device=e_sorted.device) - starts.index_select(0, e_sorted)
    dst = e_sorted * C + rank  # padded row of each ragged row

    def gmm(a, w):
        buf = a.new_zeros(N * C, a.shape[1]).index_copy(0, dst, a).view(N, C, -1)
        return torch.bmm(buf, w.transpose(1, 2)).reshape(N * C, -1).index_select(0, dst)
    return gmm


def _per_block_row(v_q: torch.Tensor, row_q: torch.Tensor) -> torch.Tensor:
    """A value per assignment ``q`` (S,) spread over the block rows (0 on padding rows, ``row_q = S``)."""
    return torch.cat([v_q, v_q.new_zeros(1)]).index_select(0, row_q)



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
    without gradient (it needed them to route); the routing weights ``w`` (k, T), slot-major,
    contiguous, and ``p = softmax(g)`` (or ``None`` for renormalised weights), both computed by
    the caller from ``g`` by the router's ``weighting`` rule
    (:func:`moe_theory.layers.routing_weights`; this function does their backward); the expert
    weights; the active experts ``indices`` (T, k) and the same listed slot-major, ``e_q``
    (T k,); ``kept`` (T, k) (1/0, or ``None``: all kept); the block layout of
    :func:`moe_theory._dispatch._block_layout`; the ``weighting`` rule's name; the block size
    ``q``. Outputs: ``y`` (T, O) and
    the logits ``g`` again, now differentiable (what :attr:`Routing.logits` holds, for losses on
    the router such as the load-balancing loss).

    Forward: the routing weights ``w``, zero on dropped slots; ``xb = x[src]``
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
    def forward(ctx, x, gate_w, gate_b, g, w, p, w13, w2, indices, e_q, kept, src, pos, row_q, bexp, weighting, q):
        T, D = x.shape
        k = indices.shape[1]
        B = bexp.shape[0]
        H = w2.shape[2]
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
        want_w13, want_w2 = ctx.needs_input_grad[6:8]
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
        return (g_x, g_gw, g_gb, g_g, None, None, g_w13, g_w2, None, None, None, None, None, None, None, None,
                None)
