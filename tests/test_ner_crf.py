"""The CRF layer against brute force: every K^T path enumerated, so the tests need no oracle."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.func import functional_call

from torchstarter.tasks.ner import crf as crf_module
from torchstarter.tasks.ner.crf import CRF


@pytest.fixture(params=["scaled", "exact"])
def recursion(request, monkeypatch) -> str:
    """Run a test through the fast scaled passes and again through the exact log-space ones
    (normally reached only when the scaled sums come near underflow)."""
    if request.param == "exact":
        monkeypatch.setattr(crf_module, "_sums_trustworthy", lambda sums: False)
        monkeypatch.setattr(crf_module, "_MAX_SHIFT", -float("inf"))
    return request.param


def make_crf(k: int, gen: torch.Generator, scale: float = 1.0,
             dtype: torch.dtype = torch.float32) -> CRF:
    """A CRF with random parameters well away from the small initial ones."""
    crf = CRF(k).to(dtype)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale)
    return crf


def make_batch(lengths: list[int], k: int, gen: torch.Generator, scale: float = 1.0,
               t: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Emissions [B, T, K], tags [B, T] (-1 on padding) and a prefix mask [B, T]."""
    t = max(lengths) if t is None else t
    mask = torch.arange(t) < torch.tensor(lengths).unsqueeze(1)
    emissions = torch.randn(len(lengths), t, k, generator=gen) * scale
    tags = torch.randint(0, k, (len(lengths), t), generator=gen).masked_fill(~mask, -1)
    return emissions, tags, mask


def brute_force(crf: CRF, emissions: Tensor, tags: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """log Z, NLL, best path, best score and the gap to the runner-up, per sentence, in float64
    by scoring every one of the K^L paths of each sentence."""
    trans, start, end = (p.detach().double() for p in (crf.transitions, crf.start, crf.end))
    out: dict[str, list] = {"log_z": [], "nll": [], "path": [], "best": [], "gap": []}
    for b in range(emissions.shape[0]):
        n = int(mask[b].sum())
        em = emissions[b, :n].detach().double()
        paths = torch.tensor(list(itertools.product(range(crf.num_tags), repeat=n)))
        scores = em[torch.arange(n), paths].sum(1) + start[paths[:, 0]] + end[paths[:, -1]]
        if n > 1:
            scores = scores + trans[paths[:, :-1], paths[:, 1:]].sum(1)
        gold = (paths == tags[b, :n]).all(1)
        log_z = torch.logsumexp(scores, 0)
        out["log_z"].append(log_z)
        out["nll"].append(log_z - scores[gold][0])
        top = scores.topk(min(2, len(scores)))
        out["path"].append(paths[top.indices[0]])
        out["best"].append(top.values[0])
        out["gap"].append(top.values[0] - top.values[1] if len(scores) > 1
                          else torch.tensor(torch.inf, dtype=torch.float64))
    return {key: torch.stack(v) if key != "path" else v for key, v in out.items()}


def path_score(crf: CRF, emissions: Tensor, path: Tensor) -> Tensor:
    """Score of one sentence's path (its real tokens only), in float64."""
    trans, start, end = (p.detach().double() for p in (crf.transitions, crf.start, crf.end))
    em = emissions.detach().double()
    n = len(path)
    return (em[torch.arange(n), path].sum() + start[path[0]] + end[path[-1]]
            + trans[path[:-1], path[1:]].sum())


def assert_matches_brute_force(crf: CRF, emissions: Tensor, tags: Tensor, mask: Tensor,
                               atol: float = 1e-5) -> None:
    """`atol` grows with the score scale: float32 keeps ~7 digits of a log Z near 100s."""
    want = brute_force(crf, emissions, tags, mask)
    log_z, nll = crf.log_partition(emissions, mask), crf.nll(emissions, tags, mask)
    assert log_z.shape == nll.shape == (emissions.shape[0],)
    torch.testing.assert_close(log_z.double(), want["log_z"], rtol=0, atol=atol)
    torch.testing.assert_close(nll.double(), want["nll"], rtol=0, atol=atol)
    decoded = crf.decode(emissions, mask)
    for b, n in enumerate(mask.sum(1).tolist()):
        assert (decoded[b, n:] == -1).all()
        got = decoded[b, :n]
        # Float32 rounding may swap near-tied paths; beyond that the path must be the argmax.
        torch.testing.assert_close(path_score(crf, emissions[b], got), want["best"][b],
                                   rtol=0, atol=atol)
        if want["gap"][b] > 1e-3 * (1 + want["best"][b].abs()):
            assert got.tolist() == want["path"][b].tolist()


@pytest.mark.parametrize("t", [1, 2, 3, 4])
def test_log_partition_and_nll_equal_brute_force_enumeration(t, recursion):
    gen = torch.Generator().manual_seed(t)
    crf = make_crf(3, gen)
    lengths = [t, max(1, t - 1), 1, max(1, t - 2), t]
    emissions, tags, mask = make_batch(lengths, 3, gen, scale=2.0)
    want = brute_force(crf, emissions, tags, mask)
    torch.testing.assert_close(crf.log_partition(emissions, mask).double(), want["log_z"],
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(crf.nll(emissions, tags, mask).double(), want["nll"],
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("t", [1, 2, 3, 4])
def test_viterbi_equals_the_brute_force_argmax_path(t):
    gen = torch.Generator().manual_seed(10 + t)
    crf = make_crf(3, gen)
    lengths = [t, max(1, t - 1), 1, max(1, t - 2), t]
    emissions, tags, mask = make_batch(lengths, 3, gen, scale=2.0)
    want = brute_force(crf, emissions, tags, mask)
    assert bool((want["gap"] > 1e-3).all()), "random scores should leave no near-ties"
    decoded = crf.decode(emissions, mask)
    assert decoded.dtype == torch.long and decoded.shape == tags.shape
    for b, n in enumerate(lengths):
        assert decoded[b, :n].tolist() == want["path"][b].tolist()
        assert (decoded[b, n:] == -1).all()


def test_viterbi_is_the_exact_argmax_at_training_size():
    # Against a plain per-sentence Viterbi with its own backpointers (K=17, T up to 40).
    gen = torch.Generator().manual_seed(7)
    crf = make_crf(17, gen, scale=0.5)
    lengths = [40, 1, 2, 17, 33, 40, 5, 29]
    emissions, _, mask = make_batch(lengths, 17, gen, scale=3.0)
    decoded = crf.decode(emissions, mask)
    trans, start, end = (p.detach().double() for p in (crf.transitions, crf.start, crf.end))
    for b, n in enumerate(lengths):
        em = emissions[b].double()
        score, back = start + em[0], []
        for t in range(1, n):
            cand = score.unsqueeze(1) + trans
            back.append(cand.argmax(0))
            score = cand.max(0).values + em[t]
        path = [int((score + end).argmax())]
        for pointers in reversed(back):
            path.append(int(pointers[path[-1]]))
        assert decoded[b, :n].tolist() == path[::-1]
        assert (decoded[b, n:] == -1).all()


def test_padding_changes_neither_nll_nor_decode_of_the_real_tokens(recursion):
    gen = torch.Generator().manual_seed(3)
    crf = make_crf(5, gen)
    lengths = [6, 3, 1, 6]
    emissions, tags, mask = make_batch(lengths, 5, gen, scale=2.0)
    # Four more padded steps holding garbage, including nan and inf, with tag -1.
    extra = torch.randn(4, 4, 5, generator=gen) * 1e4
    extra[0, 0, 0], extra[1, 2, 3], extra[2, 1, 4] = torch.nan, torch.inf, -torch.inf
    padded_em = torch.cat([emissions, extra], 1)
    # Garbage also on the positions that were already padding.
    padded_em[1, 3:6] = torch.nan
    padded_tags = torch.cat([tags, torch.full((4, 4), -1)], 1)
    padded_mask = torch.cat([mask, torch.zeros(4, 4, dtype=torch.bool)], 1)

    emissions.requires_grad_(True)
    padded_em.requires_grad_(True)
    nll = crf.nll(emissions, tags, mask)
    padded_nll = crf.nll(padded_em, padded_tags, padded_mask)
    torch.testing.assert_close(padded_nll, nll)
    torch.testing.assert_close(crf.log_partition(padded_em, padded_mask),
                               crf.log_partition(emissions, mask))

    grad, = torch.autograd.grad(nll.sum(), emissions)
    padded_grad, = torch.autograd.grad(padded_nll.sum(), padded_em)
    torch.testing.assert_close(padded_grad[:, :6] * mask.unsqueeze(2), grad * mask.unsqueeze(2))
    assert (padded_grad[~padded_mask] == 0).all()

    decoded = crf.decode(emissions.detach(), mask)
    padded_decoded = crf.decode(padded_em.detach(), padded_mask)
    assert torch.equal(padded_decoded[:, :6], decoded)
    assert (padded_decoded[~padded_mask] == -1).all()


def test_gradients_reach_emissions_and_all_three_parameter_tensors():
    gen = torch.Generator().manual_seed(4)
    crf = CRF(4)
    emissions, tags, mask = make_batch([5, 2, 4], 4, gen)
    emissions.requires_grad_(True)
    crf.nll(emissions, tags, mask).mean().backward()
    for name, grad in [("emissions", emissions.grad), ("transitions", crf.transitions.grad),
                       ("start", crf.start.grad), ("end", crf.end.grad)]:
        assert grad is not None, name
        assert grad.dtype == torch.float32 and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    assert (emissions.grad[mask].abs().sum(-1) > 0).all()
    assert (emissions.grad[~mask] == 0).all()


class _NLL(nn.Module):
    """Lets functional_call swap the CRF parameters for gradcheck inputs."""

    def __init__(self, crf: CRF) -> None:
        super().__init__()
        self.crf = crf

    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        return self.crf.nll(emissions, tags, mask)


@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_gradients_match_gradcheck_in_double_precision(scale, recursion):
    # scale=300: emissions spread far beyond exp()'s range, which the max shifts must absorb.
    gen = torch.Generator().manual_seed(5)
    crf = make_crf(3, gen, dtype=torch.float64)
    emissions, tags, mask = make_batch([4, 2, 1, 3], 3, gen)
    emissions = (emissions.double() * scale).requires_grad_(True)
    params = {f"crf.{name}": p.detach().clone().requires_grad_(True)
              for name, p in crf.named_parameters()}
    wrapper = _NLL(crf)

    def nll(em: Tensor, trans: Tensor, start: Tensor, end: Tensor) -> Tensor:
        swapped = {"crf.transitions": trans, "crf.start": start, "crf.end": end}
        return functional_call(wrapper, swapped, (em, tags, mask))

    inputs = (emissions, params["crf.transitions"], params["crf.start"], params["crf.end"])
    assert torch.autograd.gradcheck(nll, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_scaled_and_exact_passes_match_float64_at_training_size(monkeypatch):
    # B=64, T=40, K=17: too big to enumerate, so both float32 passes are held against the
    # same layer in float64. Scores reach ~300 here, where float32 rounding is ~2e-5.
    gen = torch.Generator().manual_seed(6)
    crf = make_crf(17, gen, scale=0.5)
    lengths = torch.randint(1, 41, (64,), generator=gen).tolist()
    emissions, tags, mask = make_batch(lengths, 17, gen, scale=3.0, t=40)

    def run(layer: CRF, em: Tensor) -> list[Tensor]:
        em = em.clone().requires_grad_(True)
        layer.zero_grad()
        nll = layer.nll(em, tags, mask)
        nll.sum().backward()
        return [t.double() for t in (nll.detach(), em.grad, layer.transitions.grad,
                                     layer.start.grad, layer.end.grad)]

    want = run(copy.deepcopy(crf).double(), emissions.double())
    scaled = run(crf, emissions)
    monkeypatch.setattr(crf_module, "_sums_trustworthy", lambda sums: False)
    monkeypatch.setattr(crf_module, "_MAX_SHIFT", -float("inf"))
    exact = run(crf, emissions)
    for got_scaled, got_exact, expected in zip(scaled, exact, want, strict=True):
        torch.testing.assert_close(got_scaled, expected, rtol=1e-6, atol=3e-4)
        torch.testing.assert_close(got_exact, expected, rtol=1e-6, atol=3e-4)


def test_extreme_scores_and_forbidden_transitions_stay_exact(monkeypatch):
    # Emissions ~100 and BIO-style hard constraints (-1e4 and -inf) make the scaled sums
    # underflow; the fallback must still match brute force, and must actually have run.
    calls = []
    exact = crf_module._logsumexp0_
    monkeypatch.setattr(crf_module, "_logsumexp0_", lambda *a: calls.append(1) or exact(*a))
    gen = torch.Generator().manual_seed(8)
    crf = make_crf(4, gen)
    with torch.no_grad():
        crf.transitions[0, 2] = -1e4
        crf.transitions[3, 2] = -torch.inf
        crf.transitions[1, 3] = -1e4
    emissions, _, mask = make_batch([5, 4, 1, 3], 4, gen, scale=100.0)
    tags = crf.decode(emissions, mask)  # a feasible gold path, so the NLL is finite
    emissions.requires_grad_(True)
    assert_matches_brute_force(crf, emissions, tags, mask, atol=1e-3)
    assert calls, "the exact fallback was expected to run"
    crf.nll(emissions, tags, mask).sum().backward()
    for grad in (emissions.grad, crf.transitions.grad, crf.start.grad, crf.end.grad):
        assert torch.isfinite(grad).all()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), k=st.integers(1, 4), t=st.integers(1, 4), batch=st.integers(1, 3),
       scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]), seed=st.integers(0, 2**31 - 1))
def test_property_random_shapes_and_lengths_match_brute_force(data, k, t, batch, scale, seed):
    lengths = data.draw(st.lists(st.integers(1, t), min_size=batch, max_size=batch))
    gen = torch.Generator().manual_seed(seed)
    crf = make_crf(k, gen, scale=min(scale, 10.0))
    emissions, tags, mask = make_batch(lengths, k, gen, scale=scale, t=t)
    assert_matches_brute_force(crf, emissions, tags, mask, atol=1e-5 * max(1.0, scale))


def test_bf16_emissions_under_autocast_match_float32():
    gen = torch.Generator().manual_seed(9)
    crf = make_crf(17, gen, scale=0.5)
    emissions, tags, mask = make_batch([30, 12, 1, 25], 17, gen, scale=3.0)
    low = emissions.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll, log_z, decoded = crf.nll(low, tags, mask), crf.log_partition(low, mask), \
            crf.decode(low, mask)
    assert nll.dtype == log_z.dtype == torch.float32
    # The recursion itself runs in float32: the same result as float32 on the rounded inputs.
    torch.testing.assert_close(nll, crf.nll(low.float(), tags, mask))
    assert torch.equal(decoded, crf.decode(low.float(), mask))
    # And close to full float32: only the emissions' own bf16 rounding differs.
    torch.testing.assert_close(nll, crf.nll(emissions, tags, mask), rtol=1e-2, atol=0.1)
    agree = (decoded == crf.decode(emissions, mask))[mask].float().mean()
    assert agree > 0.9


def test_bf16_training_step_under_autocast_gives_float32_gradients():
    gen = torch.Generator().manual_seed(11)
    features, tags, mask = make_batch([8, 5, 3], 6, gen)
    layer, crf = nn.Linear(6, 5), CRF(5)
    tags = tags.clamp(max=4).masked_fill(~mask, -1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emissions = layer(features)
        assert emissions.dtype == torch.bfloat16
        loss = crf.nll(emissions, tags, mask).sum()
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    for p in [*layer.parameters(), *crf.parameters()]:
        assert p.grad is not None and p.grad.dtype == torch.float32
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_mismatched_shapes_are_rejected():
    crf = CRF(3)
    emissions, tags, mask = make_batch([3, 2], 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="emissions"):
        crf.nll(emissions[..., :2], tags, mask)
    with pytest.raises(ValueError, match="mask"):
        crf.decode(emissions, mask[:, :2])
    with pytest.raises(ValueError, match="tags"):
        crf.nll(emissions, tags[:1], mask)
