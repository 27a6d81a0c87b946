"""A third task, text classification, written only against the public task interface.

The test writes a task package and a CSV of short reviews into a fresh folder, then
runs build-dataset, train, evaluate and predict through the unchanged command line:
proof that a new kind of data needs a task package and no change to the engine.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

# The whole task, one subclass of the engine's Task: data building from a CSV, a
# vocabulary from the train split (describe_data, which every later hook receives as
# data_info), a bag-of-embeddings classifier, loss, metrics, a confusion matrix in
# evaluate, and predict for new texts.
REVIEWS_TASK = textwrap.dedent('''
    """Sentiment of short reviews: a CSV of text,label -> one label per text."""
    from __future__ import annotations

    import csv
    import random
    from collections import Counter
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    from torch import nn

    from torchstarter.config import Field
    from torchstarter.engine.batching import TensorData
    from torchstarter.engine.task import Loss, Metric, Task
    from torchstarter.errors import UserError


    def read_rows(path):
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                return [(row["text"], row["label"]) for row in csv.DictReader(fh)]
        except FileNotFoundError:
            raise UserError(f"{path}: not found; run torchstarter build-dataset") from None


    def encode(texts, data_info):
        ids = {w: i for i, w in enumerate(data_info["words"])}
        tokens = [[ids.get(w, 1) for w in text.lower().split()] or [1] for text in texts]
        batch = torch.zeros(len(tokens), max(map(len, tokens)), dtype=torch.long)
        for i, row in enumerate(tokens):
            batch[i, :len(row)] = torch.tensor(row)
        return batch


    class BagOfWords(nn.Module):
        def __init__(self, vocab_size, dim, num_labels):
            super().__init__()
            self.embed = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)
            self.out = nn.Linear(dim, num_labels)

        def forward(self, ids):
            return self.out(self.embed(ids))


    def accuracy(logits, labels):
        return (logits.argmax(1) == labels).sum(), labels.numel()


    class Reviews(Task):
        schema = {
            "embedding_dim": Field(int, "Size of the word embeddings.", default=16, min=1),
            "min_count": Field(int, "Rarer train words become <unk>.", default=1, min=1),
        }
        metrics = {"accuracy": Metric(accuracy)}
        default_metric = "accuracy"

        def add_build_arguments(self, parser):
            parser.add_argument("--val-fraction", type=float, default=0.15)
            parser.add_argument("--test-fraction", type=float, default=0.15)

        def build_dataset(self, args):
            rows = read_rows(args.data_dir)
            random.Random(args.seed).shuffle(rows)
            n_val = round(len(rows) * args.val_fraction)
            n_test = round(len(rows) * args.test_fraction)
            parts = {"val": rows[:n_val], "test": rows[n_val:n_val + n_test],
                     "train": rows[n_val + n_test:]}
            out = Path(args.output_dir)
            if out.exists() and any(out.iterdir()) and not args.overwrite:
                raise UserError(f"{out}: not empty; pass --overwrite")
            out.mkdir(parents=True, exist_ok=True)
            for split, part in parts.items():
                with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(["text", "label"])
                    writer.writerows(part)
            return [f"{split}: {len(part)} reviews" for split, part in parts.items()]

        def describe_data(self, params, data_dir):
            rows = read_rows(Path(data_dir) / "train.csv")
            counts = Counter(w for text, _ in rows for w in text.lower().split())
            words = ["<pad>", "<unk>"] + sorted(w for w, c in counts.items()
                                                if c >= params.min_count)
            return {"words": words, "labels": sorted({label for _, label in rows})}

        def load_split(self, params, data_dir, split, data_info):
            rows = read_rows(Path(data_dir) / f"{split}.csv")
            label_ids = {label: i for i, label in enumerate(data_info["labels"])}
            unknown = sorted({label for _, label in rows} - set(label_ids))
            if unknown:
                raise UserError(f"{split}.csv: labels {unknown} are not in the train split")
            labels = torch.tensor([label_ids[label] for _, label in rows])
            return TensorData(encode([text for text, _ in rows], data_info), labels)

        def build_model(self, params, data_info):
            return BagOfWords(len(data_info["words"]), params.embedding_dim,
                              len(data_info["labels"]))

        def loss(self, logits, labels):
            return Loss(F.cross_entropy(logits, labels), labels.shape[0])

        @torch.no_grad()
        def evaluation_report(self, model, params, data, device, data_info):
            model.eval()
            logits = model(data.inputs.to(device)).cpu()
            names = data_info["labels"]
            matrix = {gold: {pred: 0 for pred in names} for gold in names}
            for gold, pred in zip(data.labels.tolist(), logits.argmax(1).tolist()):
                matrix[names[gold]][names[pred]] += 1
            return {"confusion": matrix}

        @torch.no_grad()
        def predict(self, model, params, inputs, device, data_info):
            model.eval()
            probs = torch.softmax(model(encode(inputs, data_info).to(device)), 1).cpu()
            names = data_info["labels"]
            return [{"text": text, "label": names[int(p.argmax())]}
                    for text, p in zip(inputs, probs)]


    TASK = Reviews()
''')

POSITIVE = ["great", "wonderful", "moving", "brilliant", "delightful", "superb"]
NEGATIVE = ["boring", "awful", "dull", "clumsy", "tedious", "dreadful"]
FILLER = ["the", "film", "plot", "was", "really", "acting", "quite", "music", "and", "a"]


def write_reviews(path: Path, n: int = 300, seed: int = 0) -> None:
    """Reviews whose label follows from their opinion words, among filler words."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            words = rng.sample(FILLER, 5) + rng.sample(POSITIVE if label == "pos" else
                                                       NEGATIVE, 2)
            rng.shuffle(words)
            writer.writerow([" ".join(words), label])


def torchstarter_env() -> dict[str, str]:
    """The environment of a CLI run as the console script makes it: `python -m` would put
    the current folder on sys.path, PYTHONSAFEPATH keeps it off (Python 3.11+)."""
    return {**os.environ, "PYTHONSAFEPATH": "1"}


def torchstarter(*args, cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI in `cwd` as a user would and insist that it succeeds."""
    result = subprocess.run([sys.executable, "-m", "torchstarter", *map(str, args)], cwd=cwd,
                            env=torchstarter_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def test_a_text_classification_task_runs_the_whole_workflow_without_engine_changes(tmp_path):
    # The task reaches into torchstarter only for the documented public names.
    imported = set(re.findall(r"^from (torchstarter\S*) import", REVIEWS_TASK, re.MULTILINE))
    assert imported == {"torchstarter.config", "torchstarter.engine.batching",
                        "torchstarter.engine.task", "torchstarter.errors"}
    package = tmp_path / "reviews_task"
    package.mkdir()
    (package / "__init__.py").write_text(REVIEWS_TASK)
    write_reviews(tmp_path / "reviews.csv")

    built = torchstarter("build-dataset", "--task", "reviews_task", "--data-dir", "reviews.csv",
                         "--output-dir", "data", "--val-fraction", "0.2", cwd=tmp_path)
    assert "val: 60 reviews" in built.stdout
    experiment = tmp_path / "experiments" / "base_model"
    experiment.mkdir(parents=True)
    (experiment / "params.json").write_text(json.dumps({
        "task": "reviews_task", "learning_rate": 0.05, "batch_size": 16, "num_epochs": 8,
        "embedding_dim": 8}))
    torchstarter("train", "--model-dir", experiment, "--data-dir", "data", cwd=tmp_path)
    history = json.loads((experiment / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert history[-1]["val_accuracy"] > 0.9

    torchstarter("evaluate", "--model-dir", experiment, "--data-dir", "data", cwd=tmp_path)
    test = json.loads((experiment / "metrics_test_best.json").read_text())
    assert test["examples"] == 45 and test["accuracy"] > 0.9
    confusion = test["confusion"]
    assert sum(sum(row.values()) for row in confusion.values()) == 45
    correct = confusion["pos"]["pos"] + confusion["neg"]["neg"]
    assert abs(correct / 45 - test["accuracy"]) < 1e-9  # the report and the metric agree

    rows = json.loads(torchstarter("predict", "--model-dir", experiment, "--json",
                                   "a wonderful and moving film", "the plot was dull and awful",
                                   cwd=tmp_path).stdout)
    assert [row["label"] for row in rows] == ["pos", "neg"]
