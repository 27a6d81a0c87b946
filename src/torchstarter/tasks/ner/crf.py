"""A linear-chain CRF output layer: sentence-level training and exact Viterbi decoding.

Score of a tag path y over a sentence of L real tokens:
    start[y_0] + sum_t emissions[t, y_t] + sum_{t>=1} transitions[y_{t-1}, y_t] + end[y_{L-1}]

All recursions run time-major in float32 (float64 when the inputs are float64) with autocast
off, so bf16 emissions lose nothing beyond their own rounding. Padded steps copy the running
scores forward unchanged, so every row ends holding its own last real step.

Speed on CPU. Per step, a [B, K, K] logsumexp costs K*B*K exps; the log-partition instead
takes each step as a max-shifted matrix product, log(exp(a - max a) @ exp(T - max_i T)) plus
the shifts, which needs only B*K exps and a [B, K] x [K, K] matmul. The shifts keep every
factor in [0, 1], so nothing overflows; a sum can only go wrong by flushing terms below the
smallest normal float to zero, and that cannot matter unless the whole sum is that small. So
each pass checks its smallest sum once at the end and, if it is below K * tiny / eps, redoes
the pass in plain log space (exact logsumexp): fast in practice, exact always. Emissions are
added outside the sums, so only transitions spanning ~80 nats (float32), such as hard -1e4
constraints, can trigger the fallback. The gradient comes from a forward-backward pass
(marginals) rather than from autograd through every step. Each pass checks on the host, so
it costs one device sync per pass on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

# Largest log factor the fast transition gradient may pull out of one (t, b) term: beyond it,
# factors flushed to zero could have carried weight, so the exact path is taken instead.
_MAX_SHIFT = 30.0


def _compute_dtype(emissions: Tensor, param: Tensor) -> torch.dtype:
    """float32 for half-precision inputs (the recursions sum many terms), else the wider dtype."""
    dtype = torch.promote_types(emissions.dtype, param.dtype)
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _floor_(x: Tensor) -> Tensor:
    """Clamp -inf maxima to the lowest finite value, so `x - max` gives -inf, not nan."""
    return x.clamp_(min=torch.finfo(x.dtype).min)


def _sums_trustworthy(sums: Tensor) -> bool:
    """True when every scaled sum is far enough above underflow to be exact to rounding.

    A sum >= K * tiny / eps has lost at most K terms below `tiny`: under one rounding error.
    A nan compares False, so it also sends the pass to the exact fallback.
    """
    info = torch.finfo(sums.dtype)
    return sums.numel() == 0 or bool(sums.amin() >= sums.shape[-1] * info.tiny / info.eps)


def _logsumexp0_(scores: Tensor, out: Tensor, mx: Tensor) -> Tensor:
    """In-place logsumexp over dim 0 into `out`; destroys `scores`, allocates nothing.

    Dim 0 because reducing over the outermost axis is an elementwise pass over contiguous rows,
    about ten times faster on CPU than reducing a short inner axis of a [B, K, K] tensor.
    """
    _floor_(torch.amax(scores, 0, out=mx))
    scores.sub_(mx).exp_()
    torch.sum(scores, 0, out=out)
    return out.log_().add_(mx)


def _alpha(em: Tensor, mask: Tensor, trans: Tensor, start: Tensor) -> Tensor:
    """Forward scores alpha[t, b, j] = log-sum of all paths over steps 0..t ending in tag j."""
    steps, batch, k = em.shape
    alpha = em.new_empty(steps, batch, k)
    torch.add(em[0], start, out=alpha[0])
    if steps == 1:
        return alpha
    # Fast pass: alpha_t = log(exp(alpha_{t-1} - m) @ exp(T - c)) + m + c + em_t.
    col = _floor_(trans.amax(0))
    scaled = (trans - col).exp_()
    em_col = em + col
    sums = em.new_empty(steps, batch, k)
    mx, e = em.new_empty(batch, 1), em.new_empty(batch, k)
    for t in range(1, steps):
        prev = alpha[t - 1]
        torch.amax(prev, 1, keepdim=True, out=mx)
        torch.sub(prev, mx, out=e).exp_()
        torch.mm(e, scaled, out=sums[t])
        torch.log(sums[t], out=e).add_(mx).add_(em_col[t])
        torch.where(mask[t], e, prev, out=alpha[t])
    if _sums_trustworthy(sums[1:]):
        return alpha
    # Exact pass: pair[i, b, j] = alpha_{t-1}[b, i] + T[i, j], logsumexp over i.
    pair = em.new_empty(k, batch, k)
    trans_i = trans.unsqueeze(1)
    nxt, mx = em.new_empty(batch, k), em.new_empty(batch, k)
    for t in range(1, steps):
        torch.add(alpha[t - 1].t().unsqueeze(2), trans_i, out=pair)
        _logsumexp0_(pair, nxt, mx).add_(em[t])
        torch.where(mask[t], nxt, alpha[t - 1], out=alpha[t])
    return alpha


def _beta(em: Tensor, mask: Tensor, trans: Tensor, end: Tensor) -> tuple[Tensor, Tensor]:
    """Backward scores beta[t, b, i] = log-sum of all continuations after step t from tag i,
    and ahead[t] = em[t + 1] + beta[t + 1]. On padding beta stays at `end`, mirroring alpha.
    """
    steps, batch, k = em.shape
    beta = em.new_empty(steps, batch, k)
    beta[-1] = end
    ahead = em.new_empty(steps - 1, batch, k)
    if steps == 1:
        return beta, ahead
    # Fast pass: beta_t = log(exp(ahead_t - m) @ exp(T - r)^T) + m + r.
    row = _floor_(trans.amax(1))
    scaled_t = (trans - row.unsqueeze(1)).exp_().t().contiguous()
    sums = em.new_empty(steps - 1, batch, k)
    mx, e = em.new_empty(batch, 1), em.new_empty(batch, k)
    for t in range(steps - 2, -1, -1):
        torch.add(em[t + 1], beta[t + 1], out=ahead[t])
        torch.amax(ahead[t], 1, keepdim=True, out=mx)
        torch.sub(ahead[t], mx, out=e).exp_()
        torch.mm(e, scaled_t, out=sums[t])
        torch.log(sums[t], out=e).add_(mx).add_(row)
        torch.where(mask[t + 1], e, beta[t + 1], out=beta[t])
    if _sums_trustworthy(sums):
        return beta, ahead
    # Exact pass: pair[j, b, i] = ahead_t[b, j] + T[i, j], logsumexp over j.
    pair = em.new_empty(k, batch, k)
    trans_j = trans.t().unsqueeze(1)
    nxt, mx = em.new_empty(batch, k), em.new_empty(batch, k)
    for t in range(steps - 2, -1, -1):
        torch.add(em[t + 1], beta[t + 1], out=ahead[t])
        torch.add(ahead[t].t().unsqueeze(2), trans_j, out=pair)
        _logsumexp0_(pair, nxt, mx)
        torch.where(mask[t + 1], nxt, beta[t + 1], out=beta[t])
    return beta, ahead


def _transition_grad(alpha: Tensor, ahead: Tensor, mask: Tensor, trans: Tensor,
                     log_z: Tensor, g: Tensor) -> Tensor:
    """sum over b, t >= 1 of g_b * P(y_{t-1} = i, y_t = j): the gradient of g . log Z wrt T.

    g is [B, 1]. log P = a[i] + T[i, j] + h[j] with a = alpha_{t-1} - log Z and
    h = ahead_{t-1} (-inf on padding, which makes those terms exactly 0). Fast: one
    [K, N] x [N, K] matmul over all N = (T-1) * B steps with factors shifted into [0, 1];
    exact: one [T-1, B, K, K] tensor.
    """
    k = trans.shape[0]
    if alpha.shape[0] == 1:
        return torch.zeros_like(trans)
    a = alpha[:-1] - log_z.unsqueeze(1)  # [T-1, B, K]
    h = ahead.masked_fill(~mask[1:], -torch.inf)
    ma = _floor_(a.amax(2, keepdim=True))
    mh = _floor_(h.amax(2, keepdim=True))
    top = _floor_(trans.max())
    # The log factor pulled out of each (t, b) term; at most max(T) - T[argmax a, argmax h],
    # so it depends on the transitions' spread only.
    shift = ma + mh + top
    if bool(shift.amax() <= _MAX_SHIFT):
        x = (a - ma).exp_().mul_(shift.exp_().mul_(g))
        y = (h - mh).exp_()
        return (trans - top).exp_().mul_(x.reshape(-1, k).t() @ y.reshape(-1, k))
    pairs = (a.unsqueeze(3) + trans).add_(h.unsqueeze(2)).exp_()
    return pairs.sum(0).mul_(g.unsqueeze(2)).sum(0)


class _LogPartition(torch.autograd.Function):
    """log Z per sentence from time-major emissions; the gradient is the tag marginals."""

    @staticmethod
    def forward(ctx: FunctionCtx, em: Tensor, mask: Tensor, trans: Tensor, start: Tensor,
                end: Tensor) -> Tensor:
        # em [T, B, K] (zero on padding), mask [T, B, 1] bool.
        alpha = _alpha(em, mask, trans, start)
        log_z = torch.logsumexp(alpha[-1] + end, dim=1)
        ctx.save_for_backward(em, mask, trans, end, alpha, log_z)
        return log_z

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        em, mask, trans, end, alpha, log_z = ctx.saved_tensors
        beta, ahead = _beta(em, mask, trans, end)
        g = grad.unsqueeze(1)  # [B, 1]
        # g * P(y_t = k); padded steps get zeros from the where() that made `em`.
        unary = (alpha + beta).sub_(log_z.unsqueeze(1)).exp_().mul_(g)
        grad_trans = grad_start = grad_end = None
        if ctx.needs_input_grad[2]:
            grad_trans = _transition_grad(alpha, ahead, mask, trans, log_z, g)
        if ctx.needs_input_grad[3]:
            grad_start = unary[0].sum(0)
        if ctx.needs_input_grad[4]:
            grad_end = (alpha[-1] + end).sub_(log_z.unsqueeze(1)).exp_().mul_(g).sum(0)
        return unary, None, grad_trans, grad_start, grad_end


class CRF(nn.Module):
    """Linear-chain CRF over K tags: learns which tag follows which (e.g. no I-PER after O)."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"a CRF needs at least one tag, got num_tags={num_tags}")
        self.num_tags = num_tags
        # transitions[i, j]: score of tag j right after tag i. Small, so the emissions lead at
        # first and the layer starts close to independent per-token softmax.
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def _time_major(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, torch.dtype]:
        """[T, B, K] emissions in the compute dtype, zero on padding (so nan/inf there cannot
        leak into sums or gradients), and the mask as [T, B, 1]."""
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(f"emissions must be [B, T, {self.num_tags}], "
                             f"got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask must be [B, T] = {tuple(emissions.shape[:2])}, "
                             f"got {tuple(mask.shape)}")
        if emissions.shape[1] == 0:
            raise ValueError("sentences must have at least one token (T >= 1)")
        dtype = _compute_dtype(emissions, self.transitions)
        mask = mask.to(torch.bool).unsqueeze(2)
        em = torch.where(mask, emissions.to(dtype), 0.0)
        return em.transpose(0, 1).contiguous(), mask.transpose(0, 1).contiguous(), dtype

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log Z of each sentence [B]: the log-sum of the scores of every tag path."""
        with torch.autocast(emissions.device.type, enabled=False):
            em, mask_t, dtype = self._time_major(emissions, mask)
            return _LogPartition.apply(em, mask_t, self.transitions.to(dtype),
                                       self.start.to(dtype), self.end.to(dtype))

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood of each gold sentence [B]; padded tags (-1) are ignored.

        emissions [B, T, K]; tags [B, T] long; mask [B, T] bool, a non-empty prefix per row.
        """
        if tags.shape != emissions.shape[:2]:
            raise ValueError(f"tags must be [B, T] = {tuple(emissions.shape[:2])}, "
                             f"got {tuple(tags.shape)}")
        with torch.autocast(emissions.device.type, enabled=False):
            return self.log_partition(emissions, mask) - self._gold_score(emissions, tags, mask)

    def _gold_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Score of the given path [B]; plain autograd, since it is a handful of gathers."""
        dtype = _compute_dtype(emissions, self.transitions)
        mask = mask.to(torch.bool)
        # Padding holds -1: point it at tag 0 and mask the terms out. A -1 on a real token
        # stays -1 and fails the gather loudly.
        safe = tags.masked_fill(~mask, 0)
        em = emissions.gather(2, safe.unsqueeze(2)).squeeze(2).to(dtype)
        trans = self.transitions.to(dtype)[safe[:, :-1], safe[:, 1:]]
        score = (torch.where(mask, em, 0.0).sum(1)
                 + torch.where(mask[:, 1:], trans, 0.0).sum(1))
        last = safe.gather(1, mask.sum(1, keepdim=True) - 1).squeeze(1)
        return score + self.start.to(dtype)[safe[:, 0]] + self.end.to(dtype)[last]

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Viterbi: the highest-scoring tag path [B, T] long, -1 on padding."""
        with torch.autocast(emissions.device.type, enabled=False):
            em, mask_t, dtype = self._time_major(emissions, mask)
            trans = self.transitions.to(dtype)
            steps, batch, k = em.shape
            # score[t][b, j]: best score of a path ending in tag j at step t (frozen on
            # padding). Only max values are kept: argmax with indices is ~10x slower than
            # amax over dim 0, so backpointers are recomputed for the chosen tags only.
            score = em.new_empty(steps, batch, k)
            torch.add(em[0], self.start.to(dtype), out=score[0])
            pair = em.new_empty(k, batch, k)  # pair[i, b, j] = score[b, i] + trans[i, j]
            trans_i = trans.unsqueeze(1)
            for t in range(1, steps):
                torch.add(score[t - 1].t().unsqueeze(2), trans_i, out=pair)
                torch.amax(pair, 0, out=score[t])
                score[t].add_(em[t])
                torch.where(mask_t[t], score[t], score[t - 1], out=score[t])
            # Backtrack, batched: the best predecessor of tag j at step t is the argmax over
            # i of score[t-1][b, i] + trans[i, j], the very sums whose max made score[t], so
            # the path is exactly the argmax path. Padding keeps the tag unchanged.
            path = torch.empty(steps, batch, dtype=torch.long, device=em.device)
            torch.argmax(score[-1] + self.end.to(dtype), 1, out=path[-1])
            into = trans.t().contiguous()  # into[j, i] = trans[i, j]
            cand = em.new_empty(batch, k)
            prev = torch.empty(batch, dtype=torch.long, device=em.device)
            real = mask_t.squeeze(2)
            for t in range(steps - 1, 0, -1):
                torch.index_select(into, 0, path[t], out=cand)
                torch.argmax(cand.add_(score[t - 1]), 1, out=prev)
                torch.where(real[t], prev, path[t], out=path[t - 1])
            return path.t().contiguous().masked_fill_(~real.t(), -1)
