"""Your task: what torchstarter trains. This package is yours to edit.

params.json names it ("task": "<this package's name>"); the engine uses the TASK object
at the bottom of this file. torchstarter.engine.task.Task lists every method a task may
define, each with its arguments and purpose.

    net.py       the network, its loss and its metrics: change the model here
    data.py      a built split -> tensors, and augmentation: change for other data here
    __init__.py  the params your params.json may hold, and the task that joins the two

Building the data set (any layout: class folders, train/val/test folders, a CSV of
path,label; resize, split, duplicates, normalisation), predicting from image files and
the sample data are inherited from the built-in images task; override them in the class
below (copy from torchstarter/tasks/images/) when you need to change them. The class
names, image size and normalisation of the data travel in every checkpoint as
`data_info` (from data/<built>/build_report.json).
"""

from __future__ import annotations

import torch

from torchstarter.config import Field, Params
from torchstarter.engine.task import DataInfo, Loss, Metric
from torchstarter.tasks.images import ImagesTask

from .data import augment, load_split
from .net import Net, accuracy, loss_fn


class ProjectTask(ImagesTask):
    # The keys of this task in params.json, besides the engine's (learning_rate,
    # batch_size, num_epochs, ...). A misspelt key, a wrong type or an out-of-range value
    # stops `train` with a message naming the key. Add a Field for every new knob.
    schema = {
        "num_channels": Field(int, "Channels of the first conv block (then x2, x4).",
                              default=32, min=1),
        "dropout_rate": Field(float, "Dropout before the last layer.", default=0.5, min=0,
                              max=1),
        "augmentation": Field(bool, "Random horizontal flips of training batches; off for "
                              "pictures that mean something else mirrored (digits, text).",
                              default=True),
    }
    # Computed on train and val every epoch and written to history.json.
    metrics = {"accuracy": Metric(accuracy)}
    # The validation metric that picks best.pt (a key of metrics, or "loss").
    default_metric = "accuracy"

    def load_split(self, params: Params, data_dir, split: str, data_info: DataInfo | None):
        return load_split(data_dir, split, data_info)

    def build_model(self, params: Params, data_info: DataInfo | None) -> Net:
        """The model for these params and this data; evaluate and predict call it again
        with the checkpoint's data_info to load weights."""
        return Net(data_info["mean"], data_info["std"], len(data_info["classes"]),
                   data_info["image_size"], params.num_channels, params.dropout_rate)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> Loss:
        return loss_fn(outputs, labels)

    def training_loss(self, params: Params, train_data, data_info: DataInfo | None):
        return self.loss  # the built-in task's label smoothing and class weights: not here

    def augment(self, params: Params, inputs: torch.Tensor, generator: torch.Generator
                ) -> torch.Tensor:
        return augment(params, inputs, generator)


TASK = ProjectTask()
