"""Your task: what torchstarter trains. This package is yours to edit.

params.json names it ("task": "<this package's name>") and the engine uses only the
names defined here; torchstarter.tasks.base describes each one.

    net.py       the network, its loss and its metrics: change the model here
    data.py      a built split -> tensors, and augmentation: change for other data here
    __init__.py  the params your params.json may hold, and the glue between the two

Building the data set from raw images (resize, split), predicting from image files and
writing the sample data are reused from the built-in SIGNS task below; copy them from
torchstarter/tasks/signs/ into this package when you need to change them.
"""

from __future__ import annotations

from torchstarter.config import Field, Params
from torchstarter.tasks.signs import (
    add_build_arguments,
    build_dataset,
    demo_inputs,
    predict,
    write_sample_data,
)

from .data import augment, load_split
from .net import METRICS, Net, loss_fn

# The keys of this task in params.json, besides the engine's (learning_rate, batch_size,
# num_epochs, ...). A misspelt key, a wrong type or an out-of-range value stops `train`
# with a message naming the key. Add a Field here for every new knob of your model.
SCHEMA = {
    "num_channels": Field(int, "Channels of the first conv block (then x2, x4).", default=32,
                          min=1),
    "dropout_rate": Field(float, "Dropout before the last layer.", default=0.8, min=0, max=1),
    "num_classes": Field(int, "Number of labels (file names carry 0..num_classes-1).",
                         default=6, min=2),
    "augmentation": Field(bool, "Random horizontal flips of training batches.", default=True),
}

# The validation metric that picks best.pt (a key of METRICS, or "loss").
DEFAULT_METRIC = "accuracy"


def build_model(params: Params) -> Net:
    """The model for these params; evaluate and predict call it again to load weights."""
    return Net(params.num_channels, params.dropout_rate, params.num_classes)


__all__ = [
    "DEFAULT_METRIC", "METRICS", "SCHEMA", "add_build_arguments", "augment",
    "build_dataset", "build_model", "demo_inputs", "load_split", "loss_fn", "predict",
    "write_sample_data",
]
