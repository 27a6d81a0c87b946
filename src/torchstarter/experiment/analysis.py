"""Where a model is wrong: what `evaluate` adds to its per-example results.

Classification rows (a label each): confusion matrix (counts and normalised by true
class), precision, recall and F1 per class, and for image inputs a grid of the examples
with the highest loss. Tagging rows (a tag list each, BIO): precision, recall and F1 per
entity type come from the task's report; here every gold and predicted entity is sorted
into one kind of outcome, the types confused on the right span are counted, and the worst
sentences listed. A short analysis_<split>_<restore>.md links it all.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from torchstarter.engine.examples import Examples
from torchstarter.tasks.ner.entities import spans  # BIO tags -> (type, start, end)
from torchstarter.utils.atomic import atomic_write

TOP_LOSSES = 16  # images in the grid
MAX_DRAWN_CLASSES = 50  # beyond this a confusion picture is unreadable (the JSON has it)
WORST = 10  # sentences listed
KINDS = ("correct", "wrong type", "wrong boundary", "wrong type and boundary", "missed",
         "spurious")



def cell(text: str) -> str:
    """A class name as one markdown table cell: its | and line breaks would split the row."""
    return text.replace("|", "\\|").replace("\n", " ").replace("\r", " ")

def confusion(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    index = {name: i for i, name in enumerate(names)}
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    for row in rows:
        counts[index[row["true"]], index[row["predicted"]]] += 1
    support, predicted, hits = counts.sum(1), counts.sum(0), np.diag(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.nan_to_num(counts / support[:, None])
        precision = np.nan_to_num(hits / predicted)
        recall = np.nan_to_num(hits / support)
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                        "f1": float(f1[i]), "support": int(support[i])}
                 for i, name in enumerate(names)}
    return {"labels": names, "counts": counts.tolist(),
            "normalised": np.round(normalised, 6).tolist(), "per_class": per_class}


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


def confusion_png(table: dict[str, Any], path: Path) -> None:
    """Counts in cells shaded by the share of their true class (Pillow: no matplotlib
    import, which alone costs evaluate more than half a second)."""
    from PIL import Image, ImageDraw

    names, counts = table["labels"], np.array(table["counts"])
    share = np.array(table["normalised"])
    cell, margin = 44, 70
    size = margin + cell * len(names) + 10
    img = Image.new("RGB", (size, size + 20), "white")
    draw = ImageDraw.Draw(img)
    font = _font(12)
    for (i, j), count in np.ndenumerate(counts):
        x, y = margin + j * cell, margin + i * cell
        level = int(255 - 200 * share[i, j])
        draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(level, level, 255),
                       outline="#cccccc")
        draw.text((x + cell / 2, y + cell / 2 - 7), str(count), font=font, anchor="mm",
                  fill="white" if share[i, j] > 0.6 else "black")
        draw.text((x + cell / 2, y + cell / 2 + 9), f"{share[i, j]:.2f}", font=_font(9),
                  anchor="mm", fill="white" if share[i, j] > 0.6 else "black")
    for k, name in enumerate(names):
        draw.text((margin + k * cell + cell / 2, margin - 8), name[:6], font=font, anchor="mb",
                  fill="black")
        draw.text((margin - 8, margin + k * cell + cell / 2), name[:8], font=font, anchor="rm",
                  fill="black")
    draw.text((margin + cell * len(names) / 2, 12), "predicted", font=font, anchor="mm",
              fill="black")
    draw.text((8, margin - 30), "true", font=font, fill="black")
    draw.text((margin, size + 4), "count, and share of the true class", font=_font(10),
              fill="#555555")
    _save(img, path)


def top_losses_png(rows: list[dict[str, Any]], images: Any, path: Path) -> list[str]:
    """The highest-loss images, each captioned with its id, true / predicted label and the
    predicted probability; returns their ids."""
    from PIL import Image, ImageDraw

    order = sorted(range(len(rows)), key=lambda i: -rows[i]["loss"])[:TOP_LOSSES]
    columns, side, caption = 4, 128, 34
    lines = (len(order) + columns - 1) // columns
    img = Image.new("RGB", (columns * (side + 8) + 8, lines * (side + caption + 8) + 8),
                    "white")
    draw = ImageDraw.Draw(img)
    font = _font(10)
    for k, i in enumerate(order):
        row = rows[i]
        x = 8 + (k % columns) * (side + 8)
        y = 8 + (k // columns) * (side + caption + 8)
        picture = _as_uint8(np.asarray(images[i]).transpose(1, 2, 0))
        tile = Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture)
        img.paste(tile.resize((side, side), Image.Resampling.NEAREST), (x, y))
        prob = row["probabilities"][row["predicted"]]
        draw.text((x, y + side + 2), str(row["id"])[:22], font=font, fill="black")
        draw.text((x, y + side + 16), f"true {row['true']}, pred {row['predicted']} "
                                      f"({prob:.2f})", font=font, fill="#b00000")
    _save(img, path)
    return [rows[i]["id"] for i in order]


def _as_uint8(picture: np.ndarray) -> np.ndarray:
    """An HWC image as bytes: floats in [0, 1] (or beyond: scaled by their range)."""
    if picture.dtype != np.uint8:
        picture = picture.astype(np.float64)
        low, high = float(picture.min()), float(picture.max())
        if low < 0 or high > 1:
            picture = (picture - low) / (high - low or 1)
        picture = np.round(picture * 255).astype(np.uint8)
    return np.ascontiguousarray(picture)


def _save(img: Any, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    atomic_write(Path(path), lambda fh: fh.write(data))


def entity_outcomes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each gold and predicted entity sorted into KINDS; type confusion on right spans."""
    kinds: Counter[str] = Counter()
    confused: Counter[tuple[str, str]] = Counter()
    for row in rows:
        gold, pred = set(spans(row["true"])), set(spans(row["predicted"]))
        kinds["correct"] += len(gold & pred)
        unused = sorted(pred - gold, key=lambda e: (e[1], e[2], e[0]))
        for kind, a, b in sorted(gold - pred, key=lambda e: (e[1], e[2], e[0])):
            # The closest unused prediction that overlaps: the same span, then the same
            # type, then the most shared tokens. Each prediction explains one gold entity.
            overlap = [(k, c, d) for k, c, d in unused if c < b and a < d]
            if not overlap:
                kinds["missed"] += 1
                continue
            k, c, d = min(overlap, key=lambda e: ((e[1], e[2]) != (a, b), e[0] != kind,
                                                  -(min(b, e[2]) - max(a, e[1])), e[1]))
            unused.remove((k, c, d))
            if (c, d) == (a, b):
                kinds["wrong type"] += 1
                confused[kind, k] += 1
            elif k == kind:
                kinds["wrong boundary"] += 1
            else:
                kinds["wrong type and boundary"] += 1
        kinds["spurious"] += len(unused)
    return {"error_kinds": {kind: kinds[kind] for kind in KINDS},
            "type_confusion": [{"true": t, "predicted": p, "count": n}
                               for (t, p), n in confused.most_common()]}


def analyse(examples: Examples, data: Any, folder: Path, stem: str) -> dict[str, Any]:
    """Write the analysis files of one evaluation (stem: e.g. test_best); returns what goes
    into the metrics file, with the names of the files written."""
    rows = examples.rows
    if not rows:
        return {}
    out: dict[str, Any] = {}
    md = [f"# Where the model is wrong: {stem.replace('_', ' ')}", ""]
    if isinstance(rows[0]["true"], str):
        names = sorted({r["true"] for r in rows} | {r["predicted"] for r in rows},
                       key=lambda n: (len(n), n))
        table = confusion(rows, names)
        out["confusion"] = table
        picture = folder / f"confusion_{stem}.png"
        if len(names) <= MAX_DRAWN_CLASSES:
            confusion_png(table, picture)
            md += [f"![confusion matrix]({picture.name})", ""]
        md += ["| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        md += [f"| {cell(name)} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | "
               f"{c['support']} |" for name, c in table["per_class"].items()]
        images = getattr(data, "inputs", None)
        if (images is not None and getattr(images, "ndim", 0) == 4 and "loss" in rows[0]
                and images.shape[1] in (1, 3)):
            picture = folder / f"top_losses_{stem}.png"
            out["top_losses"] = top_losses_png(rows, images.cpu().numpy(), picture)
            md += ["", f"Highest-loss examples: ![top losses]({picture.name})"]
    else:
        out.update(entity_outcomes(rows))
        worst = sorted(rows, key=lambda r: (-r.get("entity_errors", 0),
                                            -r.get("token_errors", 0)))[:WORST]
        out["worst_sentences"] = [r["id"] for r in worst]
        md += ["| outcome | entities |", "|---|---|"]
        md += [f"| {kind} | {n} |" for kind, n in out["error_kinds"].items()]
        if out["type_confusion"]:
            md += ["", "Right span, wrong type:", "", "| true | predicted | count |",
                   "|---|---|---|"]
            md += [f"| {c['true']} | {c['predicted']} | {c['count']} |"
                   for c in out["type_confusion"]]
        md += ["", "Worst sentences (most entity errors):", ""]
        for r in worst:
            words = r.get("words") or [str(i) for i in range(len(r["true"]))]
            tagged = " ".join(f"{w}/{t}" + ("" if t == p else f"→{p}")
                              for w, t, p in zip(words, r["true"], r["predicted"],
                                                 strict=True))
            md.append(f"- {r['id']}: {tagged}")
    report = folder / f"analysis_{stem}.md"
    text = "\n".join(md) + "\n"
    atomic_write(report, lambda fh: fh.write(text.encode()))
    out["analysis_file"] = report.name
    return out
