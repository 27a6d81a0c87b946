"""What each template of `torchstarter new` brings besides its task package.

A blueprint knows its ready-built sample data, its first experiment's params and the
words its README uses to describe the data; the task code itself is the package of the
same name in scaffold/templates/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchstarter.tasks import load_task
from torchstarter.tasks.sample_params import SAMPLE_PARAMS


@dataclass(frozen=True)
class Blueprint:
    template: str
    data_name: str  # the built data set is data/<data_name>
    base_params: dict[str, Any]  # experiments/base_model/params.json, less "task"
    prepare_data: Callable[[Path], list[str]]  # fills data/ with raw and built sample data
    rebuild_commands: tuple[str, ...]  # from data/raw to data/<data_name>; {task} = package
    predict_inputs: str  # shell words for predict in the README
    net_role: str
    data_role: str
    raw_layout: str
    built_layout: str


def _signs_data(data: Path) -> list[str]:
    task = load_task("signs")
    counts = task.write_sample_data(data / "raw")
    task.build_dataset(task.build_options(data / "raw", data / "signs"))
    return [f"data/raw: the built-in sample ({counts['train']} train and {counts['test']} "
            f"test images); data/signs: built from it"]


def _images_data(data: Path) -> list[str]:
    task = load_task("images")
    counts = task.write_sample_data(data / "raw")
    task.build_dataset(task.build_options(data / "raw", data / "images"))
    return [f"data/raw: the built-in sample ({counts['train']} train and {counts['test']} "
            f"test images in class folders); data/images: built from it"]


def _ner_data(data: Path) -> list[str]:
    task = load_task("ner")
    task.write_sample_data(data / "raw")
    task.build_dataset(task.build_options(data / "raw", data / "ner"))
    task.build_vocab(task.vocab_options(data / "ner"))
    return ["data/raw: the built-in sample corpus; data/ner: its splits and vocabulary"]


def _sample_params(task: str) -> dict[str, Any]:
    return {k: v for k, v in SAMPLE_PARAMS[task].items() if k != "task"}


BLUEPRINTS = {
    "signs": Blueprint(
        template="signs",
        data_name="signs",
        base_params=_sample_params("signs"),
        prepare_data=_signs_data,
        rebuild_commands=(
            "torchstarter build-dataset --task {task} --data-dir data/raw "
            "--output-dir data/signs --overwrite",),
        predict_inputs="data/signs/test_signs",
        net_role="the network, its loss and its metrics: change the model here",
        data_role="a built split -> tensors, and augmentation: change it for other data",
        raw_layout="`raw/train_signs/` and `raw/test_signs/` hold images named "
                   "`{label}_IMG_{id}.jpg` (any size; jpg or png). The sample is "
                   "scikit-learn's handwritten digits 0-5.",
        built_layout="`signs/{train,val,test}_signs/` hold 64x64 images with the same "
                     "names (train split 80/20 into train and val with seed 230), and "
                     "`signs/build_report.json` the split and any duplicate images.",
    ),
    "images": Blueprint(
        template="images",
        data_name="images",
        base_params=_sample_params("images"),
        prepare_data=_images_data,
        rebuild_commands=(
            "torchstarter build-dataset --task {task} --data-dir data/raw "
            "--output-dir data/images --overwrite",),
        predict_inputs="data/raw/test/three",
        net_role="the network, its loss and its metrics: change the model here",
        data_role="a built split -> tensors, and augmentation: change it for other data",
        raw_layout="`raw/train/<class>/` and `raw/test/<class>/` hold the images of each "
                   "class (any size, color mode and common format). Your own data can be "
                   "class folders with or without `train/`, `val/`, `test/` folders, or a "
                   "CSV of `path,label`: see docs/data.md of torchstarter. The sample is "
                   "scikit-learn's handwritten digits 0-5 as grayscale PNG files.",
        built_layout="`images/{train,val,test}/` hold the images as 64x64 RGB PNG files, "
                     "`images/{train,val,test}.csv` each file's class and original path "
                     "(val carved from train with seed 230, by class), and "
                     "`images/build_report.json` the classes, the train mean and std the "
                     "network normalises with, and any duplicate images.",
    ),
    "ner": Blueprint(
        template="ner",
        data_name="ner",
        base_params=_sample_params("ner"),
        prepare_data=_ner_data,
        rebuild_commands=(
            "torchstarter build-dataset --task {task} --data-dir data/raw "
            "--output-dir data/ner --overwrite",
            "torchstarter build-vocab --task {task} --data-dir data/ner"),
        predict_inputs='"John lives in New York ."',
        net_role="the tagger, its loss and its metrics: change the model here",
        data_role="the vocabulary and a built split -> tensors: change it for other data",
        raw_layout="`raw/ner_dataset.csv` is a corpus in the Kaggle GMB format (columns "
                   "`Sentence #,Word,POS,Tag`, BIO tags); CoNLL column files work too "
                   "(token first, tag last, a blank line between sentences). The sample's "
                   "82 sentences prove the pipeline but are far too few to learn from; the "
                   "real corpus is Kaggle's `ner_dataset.csv` (48k sentences).",
        built_layout="`ner/{train,val,test}/` hold `sentences.txt` (tokens separated by "
                     "spaces, one sentence a line) and `labels.txt` (the tags, aligned); "
                     "`ner/words.txt`, `ner/tags.txt` and `ner/dataset_params.json` are "
                     "the vocabulary (words from train only).",
    ),
}
