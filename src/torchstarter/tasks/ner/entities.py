"""Entity-level scoring for BIO taggers, CoNLL convention (as conlleval and seqeval's default).

Token accuracy flatters a tagger: most tokens are O. What people report is micro
precision/recall/F1 over whole entities, where an entity counts only if its type,
start and end all match. The engine sums (numerator, denominator) per batch on the
device and divides once per epoch, so `entity_counts` returns exact per-batch counts
from tensor ops alone: no .item(), no Python loop over sentences or tokens.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TagScheme", "entity_counts", "first_non_bio", "per_type_report", "prf", "spans"]

OUTSIDE = "O"


def _parse_tag(tag: str) -> tuple[str, str]:
    """Split a tag into (prefix, type); refuse anything but O, B-X, I-X so errors surface early."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    if isinstance(tag, str) and len(tag) > 2 and tag[:2] in ("B-", "I-"):
        return tag[0], tag[2:]
    raise ValueError(f"tag {tag!r} is not BIO: expected 'O', 'B-<type>' or 'I-<type>'")


def first_non_bio(tag_lists: Sequence[Sequence[str]]) -> tuple[int, str] | None:
    """(index of the list, tag) of the first tag that is not O, B-X or I-X, else None."""
    for i, tags in enumerate(tag_lists):
        for tag in tags:
            try:
                _parse_tag(tag)
            except ValueError:
                return i, tag
    return None


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of one sentence as (type, start, end_exclusive), the reference the tensors follow.

    A chunk opens at B-X, or at I-X unless it continues an open chunk of type X; it
    closes before O, before any B-, before I-Y of another type, or at the sentence end.
    """
    found: list[tuple[str, int, int]] = []
    open_type: str | None = None
    open_start = 0
    for position, tag in enumerate(tags):
        prefix, kind = _parse_tag(tag)
        continues = prefix == "I" and kind == open_type
        if open_type is not None and not continues:
            found.append((open_type, open_start, position))
            open_type = None
        if prefix != OUTSIDE and not continues:
            open_type, open_start = kind, position
    if open_type is not None:
        found.append((open_type, open_start, len(tags)))
    return found


class TagScheme:
    """Per-tag-id lookup tensors, built once, so batches are scored by indexing, not parsing."""

    def __init__(self, tags: Sequence[str]) -> None:
        if isinstance(tags, str) or len(tags) == 0:
            raise ValueError("a tag scheme needs a non-empty list of tag names")
        self.tags: list[str] = list(tags)
        seen: set[str] = set()
        self.type_names: list[str] = []
        begins: list[bool] = []
        insides: list[bool] = []
        type_ids: list[int] = []
        for tag in self.tags:
            prefix, kind = _parse_tag(tag)
            if tag in seen:
                raise ValueError(f"tag {tag!r} appears twice in the tag list")
            seen.add(tag)
            if prefix != OUTSIDE and kind not in self.type_names:
                self.type_names.append(kind)
            begins.append(prefix == "B")
            insides.append(prefix == "I")
            type_ids.append(-1 if prefix == OUTSIDE else self.type_names.index(kind))
        self.begins = torch.tensor(begins, dtype=torch.bool)
        self.insides = torch.tensor(insides, dtype=torch.bool)
        self.type_ids = torch.tensor(type_ids, dtype=torch.long)
        # One lookup per batch instead of three: code = 2 * (type id + 1) + is_begin, so
        # O is 0, and a last slot (also 0) stands in for padding, whatever its id.
        self.codes = torch.cat((2 * (self.type_ids + 1) + self.begins.long(),
                                torch.zeros(1, dtype=torch.long)))
        # Shared by every copy, so each device's tensors are moved only once.
        self._copies: dict[torch.device, TagScheme] = {self.begins.device: self}

    def __len__(self) -> int:
        return len(self.tags)

    def __repr__(self) -> str:
        return f"TagScheme({self.tags!r})"

    def to(self, device: torch.device | str) -> TagScheme:
        """This scheme with its tensors on `device`; cached so per-batch calls cost nothing."""
        device = torch.device(device)
        if device.type != "cpu" and device.index is None:
            device = torch.empty(0, device=device).device  # "cuda" -> "cuda:<current>"
        copy = self._copies.get(device)
        if copy is None:
            copy = object.__new__(TagScheme)
            copy.tags = self.tags
            copy.type_names = self.type_names
            copy.begins = self.begins.to(device)
            copy.insides = self.insides.to(device)
            copy.type_ids = self.type_ids.to(device)
            copy.codes = self.codes.to(device)
            copy._copies = self._copies
            self._copies[device] = copy
        return copy


def _chunk_marks(ids: Tensor, mask: Tensor, codes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per position: does a chunk start here, its code, and where the chunk here ends.

    Padding is read as O (the extra last code slot), which is exact because the mask is
    a prefix: padding never starts or continues a chunk, and closes one open at the
    last real token.
    """
    length = ids.shape[1]
    safe = torch.where(mask, ids, codes.shape[0] - 1)  # padding may hold any id
    code = codes.index_select(0, safe.reshape(-1)).view(ids.shape)
    live = code > 0
    # Position t continues the chunk at t - 1 iff it is I- of the same type: its code
    # is the previous code with the begin bit cleared (never true for O, code 0).
    continues = code == (F.pad(code[:, :-1], (1, 0)) & -2)
    start = live & ~continues
    last = live & ~F.pad(continues[:, 1:], (0, 1))
    # Inside a chunk no position before its last token is marked `last`, so the chunk
    # starting at t ends at the first `last` at or after t: a reversed running minimum.
    positions = torch.arange(length, device=ids.device).expand(ids.shape)
    last_at = torch.where(last, positions, length)
    end = torch.cummin(last_at.flip(1), dim=1).values.flip(1)
    return start, code, end


def entity_counts(pred: Tensor, gold: Tensor, mask: Tensor, scheme: TagScheme) -> Tensor:
    """(true positives, predicted entities, gold entities) of one batch as float64 on its device.

    Counts, not ratios, so that summing them over batches and dividing once per epoch
    gives the exact corpus-level micro precision/recall/F1.
    """
    if pred.dim() != 2 or pred.shape != gold.shape or pred.shape != mask.shape:
        raise ValueError(f"pred, gold and mask must share one [B, T] shape; got "
                         f"{tuple(pred.shape)}, {tuple(gold.shape)}, {tuple(mask.shape)}")
    if pred.numel() == 0:
        return torch.zeros(3, dtype=torch.float64, device=pred.device)
    codes = scheme.to(pred.device).codes
    mask = mask.to(device=pred.device, dtype=torch.bool)
    # Pred and gold go through the same kernels together: half the launches on a GPU.
    ids = torch.cat((pred, gold.to(device=pred.device, dtype=pred.dtype)))
    start, code, end = _chunk_marks(ids, torch.cat((mask, mask)), codes)
    rows = pred.shape[0]
    same_type = (code[:rows] ^ code[rows:]) < 2  # codes differ at most in the begin bit
    matched = start[:rows] & start[rows:] & same_type & (end[:rows] == end[rows:])
    found = start.view(2, -1).sum(1)  # predicted, gold
    return torch.cat((matched.sum().view(1), found)).to(torch.float64)


def prf(tp: float, n_pred: float, n_gold: float) -> tuple[float, float, float]:
    """Precision, recall, F1 from summed counts; 0 where nothing was predicted or expected."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2.0 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0
    return precision, recall, f1


def per_type_report(gold: list[list[str]], pred: list[list[str]]) -> dict[str, dict[str, float]]:
    """Per-type and micro scores from seqeval itself, as plain numbers ready for JSON.

    Used at evaluation end, where a per-type breakdown is worth a pass over strings;
    going through seqeval keeps the reported figures those people compare against.
    """
    from seqeval.metrics import classification_report

    for sentence in (*gold, *pred):
        for tag in sentence:
            _parse_tag(tag)
    with warnings.catch_warnings():
        # Macro averages over zero types warn "mean of empty slice"; they are dropped below.
        warnings.simplefilter("ignore", RuntimeWarning)
        raw = classification_report([list(s) for s in gold], [list(s) for s in pred],
                                    output_dict=True, zero_division=0)
    report: dict[str, dict[str, float]] = {}
    for name, row in raw.items():
        if name in ("macro avg", "weighted avg"):
            continue
        report[name] = {"precision": float(row["precision"]), "recall": float(row["recall"]),
                        "f1": float(row["f1-score"]), "support": int(row["support"])}
    return report
