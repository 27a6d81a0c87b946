"""Your task: what torchstarter trains. This package is yours to edit.

params.json names it ("task": "<this package's name>"); the engine uses the TASK object
at the bottom of this file. torchstarter.engine.task.Task lists every method a task may
define, each with its arguments and purpose.

    net.py       the network, its loss and its metrics: change the model here
    data.py      a built split -> tensors, and augmentation: change for other data here
    __init__.py  the params your params.json may hold, and the task that joins the two

Building the data set from raw images (resize, split), predicting from image files and
writing the sample data are inherited from the built-in SIGNS task; override them in
the class below (copy from torchstarter/tasks/signs/) when you need to change them.
"""

from __future__ import annotations

import torch

from torchstarter.config import Field, Params
from torchstarter.engine.task import DataInfo, Loss, Metric
from torchstarter.tasks.signs import SignsTask

from .data import augment, load_split
from .net import Net, accuracy, loss_fn


class ProjectTask(SignsTask):
    # The keys of this task in params.json, besides the engine's (learning_rate,
    # batch_size, num_epochs, ...). A misspelt key, a wrong type or an out-of-range value
    # stops `train` with a message naming the key. Add a Field for every new knob.
    schema = {
        "num_channels": Field(int, "Channels of the first conv block (then x2, x4).",
                              default=32, min=1),
        "dropout_rate": Field(float, "Dropout before the last layer.", default=0.8, min=0,
                              max=1),
        "num_classes": Field(int, "Number of labels (file names carry 0..num_classes-1).",
                             default=6, min=2),
        "augmentation": Field(bool, "Random horizontal flips of training batches.",
                              default=True),
        # Training-only shapes of the loss (SignsTask.training_loss reads them).
        "label_smoothing": Field(float, "Training targets mix this share of a uniform "
                                 "distribution into the one-hot label (0: off); validation "
                                 "and test losses stay plain cross-entropy.", default=0.0,
                                 min=0, max=0.99),
        "class_weights": Field(str, "'balanced': weigh each training example by n / "
                               "(classes * n_class) of the train split, so rare classes "
                               "count as much as common ones; validation and test losses "
                               "stay unweighted.", default="none",
                               choices=("none", "balanced")),
    }
    # Computed on train and val every epoch and written to history.json.
    metrics = {"accuracy": Metric(accuracy)}
    # The validation metric that picks best.pt (a key of metrics, or "loss").
    default_metric = "accuracy"

    def load_split(self, params: Params, data_dir, split: str, data_info: DataInfo | None):
        return load_split(params, data_dir, split)

    def build_model(self, params: Params, data_info: DataInfo | None) -> Net:
        """The model for these params; evaluate and predict call it again to load weights."""
        return Net(params.num_channels, params.dropout_rate, params.num_classes)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> Loss:
        return loss_fn(outputs, labels)

    def augment(self, params: Params, inputs: torch.Tensor, generator: torch.Generator
                ) -> torch.Tensor:
        return augment(params, inputs, generator)


TASK = ProjectTask()
