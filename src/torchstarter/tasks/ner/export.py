"""The tagger in a form `torch.export` and ONNX can take with any batch size and length.

The training model cannot be traced as it is: it packs sequences for the backward LSTM
and cuDNN-style LSTM calls fix the sentence length in the graph. Here the same weights
run as explicit recurrences over time with `scan` (one ONNX Scan per direction and
layer), the backward direction reading each sentence reversed within its own length,
and the CRF's Viterbi decoding runs in the graph the same way, so the artifact's output
is the tag ids themselves.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

from torchstarter.config import Params
from torchstarter.engine.export_spec import ExportSpec
from torchstarter.engine.task import DataInfo
from torchstarter.errors import UserError
from torchstarter.tasks.ner.data import (
    CASE_DIGIT,
    CASE_LOWER,
    CASE_OTHER,
    CASE_TITLE,
    CASE_UPPER,
    MAX_WORD_CHARS,
    UNK_ID,
    option,
)
from torchstarter.tasks.ner.net import Tagger


def _lstm_direction(x: Tensor, w_ih: Tensor, w_hh: Tensor, b: Tensor) -> Tensor:
    """One LSTM direction over [B, T, F] -> [B, T, H], gates in PyTorch's i, f, g, o order."""
    gates_in = (x @ w_ih.t() + b).transpose(0, 1)  # [T, B, 4H]: the input part, at once
    hidden = w_hh.shape[1]
    zeros = x.new_zeros(x.shape[0], hidden)

    def step(carry: tuple[Tensor, Tensor], g: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
        h, c = carry
        i, f, cell, o = (g + h @ w_hh.t()).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(cell)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h, c), h.clone()

    _, hs = scan(step, (zeros, zeros.clone()), gates_in)
    return hs.transpose(0, 1)


def _reverse_within(x: Tensor, lengths: Tensor) -> Tensor:
    """Each row's first `length` steps in reverse order; the padding after them is filled
    from step 0 and never read back. Its own inverse on the real steps."""
    steps = torch.arange(x.shape[1], device=x.device)
    index = (lengths[:, None] - 1 - steps[None, :]).clamp(min=0)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def viterbi(emissions: Tensor, lengths: Tensor, transitions: Tensor, start: Tensor,
            end: Tensor) -> Tensor:
    """The best tag path [B, T] (-1 on padding), as CRF.decode finds it, with two scans.

    Two padding steps are added at the end, so that each scan runs at least two steps
    whatever the sentence length (an exported graph assumes a varying size is not 0 or 1).
    """
    em = F.pad(emissions, (0, 0, 0, 2)).transpose(0, 1)  # [T + 2, B, K]
    steps = torch.arange(em.shape[0], device=em.device)
    real = (steps[:, None] < lengths[None, :])  # [T, B]
    tags = torch.arange(em.shape[2], device=em.device).expand(em.shape[1], -1)  # [B, K]

    def forward(score: Tensor, xs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        e, keep = xs
        best, back = (score[:, :, None] + transitions[None]).max(dim=1)  # over the previous
        keep = keep[:, None]
        return torch.where(keep, best + e, score), torch.where(keep, back, tags)

    score, back = scan(forward, em[0] + start, (em[1:], real[1:]))  # back: [T-1, B, K]
    last = (score + end).argmax(dim=1)  # the tag at each row's last real step

    def backward(tag: Tensor, pointers: Tensor) -> tuple[Tensor, Tensor]:
        return pointers.gather(1, tag[:, None]).squeeze(1), tag.clone()

    first, later = scan(backward, last, back.flip(0))  # later: tags of steps T-1 .. 1
    path = torch.cat([first[None], later.flip(0)], dim=0).transpose(0, 1)
    return path.masked_fill(~real.transpose(0, 1), -1)[:, :emissions.shape[1]]


class ExportedTagger(nn.Module):
    """(words, chars, cases, lengths) -> (emissions [B, T, K], tags [B, T], -1 on padding).

    Holds the trained Tagger and reads its weights; `chars` and `cases` are ignored when
    the tagger has no character CNN or case features (they stay inputs, so every tagger
    has the same signature). A project's own tagger (torchstarter new --from ner) may
    leave out the optional layers: absent means off.
    """

    def __init__(self, tagger: Tagger):
        super().__init__()
        self.tagger = tagger

    def forward(self, words: Tensor, chars: Tensor, cases: Tensor, lengths: Tensor
                ) -> tuple[Tensor, Tensor]:
        t = self.tagger
        x = t.embedding(words)
        if getattr(t, "char_embedding", None) is not None:
            b, s, w = chars.shape
            c = t.char_embedding(chars.reshape(b * s, w)).transpose(1, 2)
            x = torch.cat([x, F.relu(t.char_conv(c)).amax(dim=2).reshape(b, s, -1)], dim=-1)
        if getattr(t, "case_embedding", None) is not None:
            x = torch.cat([x, t.case_embedding(cases)], dim=-1)
        x = x.float()
        lstm = t.lstm
        for layer in range(lstm.num_layers):
            def weights(suffix: str, layer: int = layer) -> tuple[Tensor, Tensor, Tensor]:
                get = lambda name: getattr(lstm, f"{name}_l{layer}{suffix}")  # noqa: E731
                return get("weight_ih"), get("weight_hh"), get("bias_ih") + get("bias_hh")
            out = _lstm_direction(x, *weights(""))
            if lstm.bidirectional:
                back = _lstm_direction(_reverse_within(x, lengths), *weights("_reverse"))
                out = torch.cat([out, _reverse_within(back, lengths)], dim=-1)
            x = out
        emissions = t.fc(x)
        steps = torch.arange(words.shape[1], device=words.device)
        real = steps[None, :] < lengths[:, None]
        crf = getattr(t, "crf", None)
        if crf is None:
            return emissions, emissions.argmax(-1).masked_fill(~real, -1)
        return emissions, viterbi(emissions, lengths, crf.transitions, crf.start, crf.end)


def export_spec(model: Tagger, params: Params, data_info: DataInfo) -> ExportSpec:
    """The tagger of tasks/ner/net.py (or a project's copy of it) in exportable form."""
    layers = {"embedding": nn.Embedding, "lstm": nn.LSTM, "fc": nn.Linear}
    for name, kind in layers.items():
        if not isinstance(getattr(model, name, None), kind):
            raise UserError(f"the NER export reads the tagger's embedding, lstm and fc layers "
                            f"(as torchstarter/tasks/ner/net.py names them), and this model "
                            f"has no {kind.__name__} '{name}'; give your task its own "
                            f"export_spec (see torchstarter.engine.export_spec)")
    if not model.lstm.batch_first or model.lstm.proj_size or not model.lstm.bias:
        raise UserError("the NER export runs batch_first LSTMs with biases and without "
                        "projections; give "
                        "your task its own export_spec (see torchstarter.engine.export_spec)")
    model = model.eval()
    with_chars = getattr(model, "char_embedding", None) is not None
    with_cases = getattr(model, "case_embedding", None) is not None

    def feed(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        words = batch["words"].cpu()
        chars = batch["chars"].cpu() if with_chars else \
            torch.zeros(*words.shape, 1, dtype=torch.long)
        cases = batch["cases"].cpu() if with_cases else torch.zeros_like(words)
        return {"words": words, "chars": chars, "cases": cases,
                "lengths": batch["lengths"].cpu()}

    def reference(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        with torch.inference_mode():
            out = model(batch)
            return out.emissions.float(), out.predictions()

    width = MAX_WORD_CHARS if with_chars else 1
    example = {"words": torch.tensor([[2, 3, 4], [5, 6, 0]]),
               "chars": torch.ones(2, 3, width, dtype=torch.long),
               "cases": torch.ones(2, 3, dtype=torch.long), "lengths": torch.tensor([3, 2])}
    tags = data_info["tags"]
    return ExportSpec(
        module=ExportedTagger(model).eval(),
        inputs={"words": {0: "batch", 1: "length"}, "chars": {0: "batch", 1: "length"},
                "cases": {0: "batch", 1: "length"}, "lengths": {0: "batch"}},
        example=example, outputs=("emissions", "tags"), feed=feed, reference=reference,
        metadata=_metadata(params, data_info, with_chars, with_cases, width, len(tags),
                           getattr(model, "crf", None) is not None))


def _metadata(params: Params, data_info: DataInfo, with_chars: bool, with_cases: bool,
              width: int, num_tags: int, crf: bool) -> dict[str, Any]:
    lowercase = bool(data_info["lowercase"])
    lower_fallback = not lowercase and bool((data_info.get("embeddings") or {})
                                            .get("extend_vocab"))
    return {
        "inputs": {
            "words": {"dtype": "int64", "shape": ["batch", "length"],
                      "meaning": "index of each token in `words`, 0 after the sentence"},
            "chars": {"dtype": "int64", "shape": ["batch", "length", width],
                      "meaning": (f"per token, its first {width} characters as 2 + their "
                                  f"index in `chars` (1 for a character not there), 0 after "
                                  f"the word and the sentence") if with_chars else
                      "unused by this model: any int64 tensor of this shape (zeros)"},
            "cases": {"dtype": "int64", "shape": ["batch", "length"],
                      "meaning": "case shape of each token, see `case_shapes`, 0 after the "
                                 "sentence" if with_cases else
                      "unused by this model: any int64 tensor of this shape (zeros)"},
            "lengths": {"dtype": "int64", "shape": ["batch"],
                        "meaning": "tokens in each sentence, at least 1"}},
        "outputs": {
            "emissions": {"dtype": "float32", "shape": ["batch", "length", num_tags],
                          "meaning": "score of each tag at each token"},
            "tags": {"dtype": "int64", "shape": ["batch", "length"],
                     "meaning": "index into `tags` of each token's tag, -1 after the "
                                "sentence; " + ("CRF Viterbi decoding runs inside the graph"
                                                if crf else "argmax of the emissions")}},
        "tokens": "split the sentence on whitespace; give it tokenised ('New York .')",
        "text_rules": "as Python 3 reads them: whitespace, lowercasing, digits and letter "
                      "case are str.split, str.lower, str.isdigit, str.islower and "
                      "str.isupper; characters are Unicode code points (not UTF-16 units)",
        "word_lookup": ("the token lowercased" if lowercase else
                        "the token as written, then lowercased if absent" if lower_fallback
                        else "the token as written")
        + f"; absent (or the token '<pad>'): index {UNK_ID}",
        "words": data_info["words"],
        "chars": data_info["chars"] if with_chars else [],
        "case_shapes": ({
            str(CASE_DIGIT): "holds a digit (checked first)",
            str(CASE_LOWER): "its cased letters all lowercase",
            str(CASE_UPPER): "its cased letters all uppercase, two or more of them",
            str(CASE_TITLE): "one uppercase letter then only lowercase ones (or a single "
                             "capital)",
            str(CASE_OTHER): "anything else: mixed case, or no cased letter at all",
        } if with_cases else {}),
        "case_features": bool(option(params, "case_features")),
        "tags": data_info["tags"],
        "entities": "BIO tags: a span starts at B-X (or I-X after another type or O) and "
                    "runs over the I-X after it",
    }
