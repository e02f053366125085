"""How :class:`moe_theory.layers.MoE` computes its output fast: the dispatch strategies.

Private module. ``MoE.forward`` hands its tokens to :func:`fast_forward` unless
``dispatch="loop"``; every strategy computes the same function as the reference loop
(``MoE.forward_reference``), to rounding, gradients included (the tests check it):

* ``"dense"``: every expert on every token as two large matmuls, combined with the sparse
  ``(T, N)`` weight matrix. It does ``N / k`` times the useful arithmetic, so it only wins for
  tiny layers, or when ``k = N``.
* ``"padded"``: assignments grouped by expert (stable sort) into an ``(N, C, d)`` buffer, ``C``
  = the largest load (or the capacity), then one batched matmul (:func:`torch.bmm`) per expert
  layer. With uneven loads the ranks above a threshold go to up to two more, smaller levels that
  hold only the experts loaded that far (their weights gathered), thresholds chosen to minimise
  padded rows (:func:`_padding_levels`). Small SwiGLU experts (``d_hidden * (2 d_model + d_out)
  <= 2**15`` MACs per token) use a finer layout instead: each expert's rows rounded up to blocks
  of ``_BLOCK_ROWS``, one :func:`torch.bmm` per layer over all blocks, in one custom autograd
  function (:class:`moe_theory._kernels._BlockSwiGLU`) whose backward is written out and which,
  for the linear top-k gates, does the gate's backward too, so that the whole layer is one
  autograd node.
* ``"sorted"``: assignments sorted by expert into a ragged ``(T k, d)`` array and one grouped
  matmul (:func:`torch.nn.functional.grouped_mm`) per expert layer; no padding. Where
  ``grouped_mm`` cannot run (float64, CPU widths not a multiple of 16 bytes, CUDA without
  bfloat16) the ragged groups go through a padded batched matmul.

:func:`choose_dispatch` is the rule of ``dispatch="auto"``; its thresholds were measured on a
2-core CPU (``benchmarks/RESULTS.md``).

The index bookkeeping (:class:`_Plan`, :func:`_block_layout`) is a few dozen operations on
vectors of ``T k`` integers. On CPU it runs in NumPy (each call costs microseconds; the same call
on a small torch tensor costs tens, and there are enough of them to matter next to the experts'
arithmetic at the theory chapters' widths), on other devices in torch. Both give the same
integers (a test checks it); the stable sort is a radix sort in NumPy for 16-bit keys. On CPU
every path is deterministic: gathers and sums in a fixed order, no atomic scatter.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._kernels import _BlockSwiGLU, _grouped_mm_supported, _ragged_bmm, _slot_sum
from .experts import SwiGLUExperts
from .layers import NoisyTopKRouter, Routing, TopKRouter, routing_weights

# Size thresholds of dispatch="auto" (measured on a 2-core CPU, see benchmarks/README.md).
_DENSE_MAX_MACS = 1 << 21   # dense if T * N * (expert MACs per token) is at most this ...
_SORTED_MIN_WIDTH = 128     # ... sorted (grouped matmul) for experts at least this wide, else padded.
_BLOCK_ROWS = 32  # padded SwiGLU path: rows per block (each expert's load rounded up to a multiple)
_BLOCK_MAX_EXPERT_MACS = 1 << 15  # ... used for experts of at most this many MACs per token, else levels


def choose_dispatch(experts, n_tokens: int, k: int) -> str:
    """What ``dispatch="auto"`` runs: ``n_tokens`` tokens, ``k`` experts each.

    ``"dense"`` when all experts are active or the whole layer is tiny;
    ``"sorted"`` when every width is at least 128 and ``grouped_mm`` runs
    (its per-expert cost is then small next to the matmuls, and it wastes
    nothing on padding); else ``"padded"`` (at small widths one batched matmul
    per level beats a grouped matmul's per-expert calls, even with padding).
    """
    N, D, H, O = (experts.n_experts, experts.d_model, experts.d_hidden,
                  experts.d_out)
    macs_per_token = D * experts.gates * H + H * O  # one expert, both layers
    if k == N or n_tokens * N * macs_per_token <= _DENSE_MAX_MACS:
        return "dense"
    widths = (D, experts.gates * H, H, O)
    weights = (experts.first, experts.w2)
    wide = min(D, H, O) >= _SORTED_MIN_WIDTH
    if wide and _grouped_mm_supported(experts.w2, weights, widths):
        return "sorted"
    return "padded"


def fast_forward(layer, xt: torch.Tensor) -> tuple[torch.Tensor, Routing, str]:
    """``MoE``'s output on tokens ``xt`` (T, D) without a Python loop over experts.

    Returns the output (T, O), the :class:`Routing` and the strategy used.
    """
    T = xt.shape[0]
    strategy = layer.dispatch if T else "dense"  # an empty batch: nothing to dispatch
    if strategy == "auto":
        strategy = choose_dispatch(layer.experts, T, layer.k)
    # The block kernel also does the gate's backward when the gate is a plain linear map; it
    # routes on logits computed here without gradient and hands back differentiable ones.
    router = layer.router
    fused = strategy == "padded" and _uses_blocks(layer.experts) and (
        type(router) is TopKRouter or (type(router) is NoisyTopKRouter and not router.training))
    if fused:
        with torch.no_grad():
            routing = router.route(router.logits(xt))
    else:
        routing = router(xt)
    capacity = layer.capacity(T)
    plan = None
    if capacity is not None or strategy in ("sorted", "padded"):
        plan = _Plan(routing.indices, layer.n_experts, capacity)
        if capacity is not None:
            routing = routing.replace(kept=plan.kept, load=plan.counts.to(routing.logits.dtype))
    if strategy == "dense":
        y = _forward_dense(layer.experts, xt, routing)
    elif strategy == "sorted":
        y = _forward_sorted(layer.experts, xt, routing, plan)
    elif _uses_blocks(layer.experts):
        y, routing = _forward_blocks(layer, xt, routing, plan, fused)
    else:
        y = _forward_padded(layer.experts, xt, routing, plan)
    return y, routing, strategy


def _forward_dense(experts, xt: torch.Tensor, routing: Routing) -> torch.Tensor:
    """Every expert on every token, then ``y_t = sum_i c_{t,i} E_i(x_t)`` with the sparse weights."""
    T, N, H, O, D = xt.shape[0], experts.n_experts, experts.d_hidden, experts.d_out, experts.d_model
    c = routing.combine_matrix()  # (T, N), zero off the (kept) active set
    G = experts.gates * H
    b1 = experts.first_bias
    h = F.linear(xt, experts.first.reshape(N * G, D), None if b1 is None else b1.reshape(N * G))
    h = experts.hidden(h.view(T, N, G))  # (T, N, H)
    hc = (h * c[:, :, None]).reshape(T, N * H)
    y = F.linear(hc, experts.w2.permute(1, 0, 2).reshape(O, N * H))  # sum_i c_i W2_i h_i
    if experts.second_bias is not None:
        y = y + c @ experts.second_bias
    return y


def _experts_padded(experts, xp: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
    """Experts on a padded batch: xp (n, C, D) -> (n, C, O), one bmm per layer.

    ``idx`` (n,) names the experts of the batch rows (default: all N, in order).
    """
    def pick(p):
        return p if idx is None else p.index_select(0, idx)
    w2 = pick(experts.w2).transpose(1, 2)
    b1, b2 = experts.first_bias, experts.second_bias
    if b1 is None:
        h = torch.bmm(xp, pick(experts.first).transpose(1, 2))
    else:
        h = torch.baddbmm(pick(b1)[:, None, :], xp, pick(experts.first).transpose(1, 2))
    h = experts.hidden(h)
    return torch.bmm(h, w2) if b2 is None else torch.baddbmm(pick(b2)[:, None, :], h, w2)


def _uses_blocks(experts) -> bool:
    """Whether the padded path takes the block layout (small SwiGLU experts) rather than levels."""
    macs = experts.d_hidden * (2 * experts.d_model + experts.d_out)  # one SwiGLU expert, per token
    return isinstance(experts, SwiGLUExperts) and macs <= _BLOCK_MAX_EXPERT_MACS


def _forward_blocks(layer, xt: torch.Tensor, routing: Routing, plan: _Plan, fused: bool):
    """Padded path of the SwiGLU expert: each expert's rows rounded up to blocks of ``_BLOCK_ROWS``.

    ``fused``: the logits in ``routing`` were computed without gradient by the linear gate, and
    the kernel does the gate's backward too (the returned routing holds its differentiable logits
    output); otherwise the gradient flows into ``routing.logits`` (noisy gate in training,
    softmax gate). Returns the output and the routing.
    """
    q = _BLOCK_ROWS
    lay = _block_layout(plan, q)
    kept = None if plan.kept is None else plan.kept.to(xt.dtype)
    gate_w, gate_b = (layer.router.weight, layer.router.bias) if fused else (None, None)
    g = routing.logits
    with torch.no_grad():  # the kernel does the weights' backward
        p = torch.softmax(g, dim=-1) if routing.weighting == "softmax" else None
        w = routing_weights(g, routing.indices, routing.weighting, p).t()  # (k, T), contiguous
    experts = layer.experts
    y, logits = _BlockSwiGLU.apply(xt, gate_w, gate_b, g, w, p, experts.w13, experts.w2, routing.indices,
                                   plan.e_q, kept, lay["src"], lay["pos"], lay["row_q"], lay["bexp"],
                                   routing.weighting, q)
    return y, (routing.replace(logits=logits) if fused else routing)


def _forward_padded(experts, xt: torch.Tensor, routing: Routing, plan: _Plan) -> torch.Tensor:
    """Padded path with levels: ranks above a threshold go to smaller blocks of the busy experts."""
    N, D = experts.n_experts, experts.d_model
    loads = plan.counts.tolist()
    thresholds = _padding_levels(loads, xt.shape[0] * plan.k)
    members, bases, rows = [], [], 0
    table = torch.full((len(thresholds) - 1, N), -1, dtype=torch.long)  # row of (level, expert)
    for lvl, (lo, hi) in enumerate(zip(thresholds[:-1], thresholds[1:])):
        ids = list(range(N)) if lvl == 0 else [i for i in range(N) if loads[i] > lo]
        members.append(ids)
        table[lvl, ids] = rows + (hi - lo) * torch.arange(len(ids))
        bases.append(rows)
        rows += len(ids) * (hi - lo)
    dev = xt.device
    rank = plan.rank
    keep = plan.keep_sorted
    if len(thresholds) > 2:
        t_inner = torch.tensor(thresholds[1:-1], device=dev)
        level = torch.bucketize(rank, t_inner, right=True)
        lows = torch.tensor(thresholds[:-1], device=dev)
        slot = table.to(dev)[level, plan.e_sorted] + rank - lows.index_select(0, level)
    else:
        slot = table.to(dev)[0].index_select(0, plan.e_sorted) + rank
    if keep is not None:
        slot = torch.where(keep, slot, torch.zeros_like(slot))
    # Buffer row r reads token src[r]; padding rows read token 0 and are never read back,
    # so they get zero gradient. Each level gathers its own block (no slicing of one buffer).
    src = torch.zeros(rows, dtype=torch.long, device=dev)
    if keep is None:
        src.index_copy_(0, slot, plan.token_sorted)
    else:
        src.index_copy_(0, slot[keep], plan.token_sorted[keep])
    outs = []
    for lvl, ids in enumerate(members):
        cap = thresholds[lvl + 1] - thresholds[lvl]
        block = xt.index_select(0, src[bases[lvl]:bases[lvl] + len(ids) * cap]).view(len(ids), cap, D)
        idx = None if lvl == 0 else torch.tensor(ids, device=dev)
        outs.append(_experts_padded(experts, block, idx).reshape(-1, experts.d_out))
    outp = outs[0] if len(outs) == 1 else torch.cat(outs)
    pos_q = torch.empty_like(slot).index_copy_(0, plan.order, slot)  # buffer row of assignment q
    return plan.combine(outp.index_select(0, pos_q), routing.weights)


def _forward_sorted(experts, xt: torch.Tensor, routing: Routing, plan: _Plan) -> torch.Tensor:
    """Sorted path: a ragged array grouped by expert, one grouped matmul per expert layer."""
    order, tok, e_sorted = plan.order, plan.token_sorted, plan.e_sorted
    if plan.keep_sorted is not None:
        order, tok, e_sorted = order[plan.keep_sorted], tok[plan.keep_sorted], e_sorted[plan.keep_sorted]
    xs = xt.index_select(0, tok)  # (S_kept, D), grouped by expert
    offs = torch.cumsum(plan.counts, 0).to(torch.int32)
    widths = (experts.d_model, experts.gates * experts.d_hidden, experts.d_hidden, experts.d_out)
    if _grouped_mm_supported(xs, (experts.first, experts.w2), widths):
        def gmm(a, w):
            return F.grouped_mm(a, w.transpose(1, 2), offs=offs)
    else:
        gmm = _ragged_bmm(plan.counts, e_sorted, xs.shape[0])
    h = gmm(xs, experts.first)
    if experts.first_bias is not None:
        h = h + experts.first_bias.index_select(0, e_sorted)
    out = gmm(experts.hidden(h), experts.w2)
    if experts.second_bias is not None:
        out = out + experts.second_bias.index_select(0, e_sorted)
    # Back to q order (a permutation; dropped assignments read row 0 and get weight 0).
    pos_q = torch.zeros(plan.S, dtype=torch.long, device=xt.device)
    pos_q[order] = torch.arange(order.shape[0], device=xt.device)
    return plan.combine(out.index_select(0, pos_q), routing.weights)


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
