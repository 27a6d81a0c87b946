"""Class names and probabilities for image files or folders, or images sent to `serve`,
as build-dataset sees them."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.export_spec import ExportSpec
from torchstarter.engine.task import DataInfo
from torchstarter.tasks.signs.predict import expand_inputs
from torchstarter.tasks.vision.decode import fit, open_rgb, to_chw_uint8
from torchstarter.tasks.vision.shipping import classifier_spec, classify, request_images


def predict(model: torch.nn.Module, params: Params, inputs: list[str], device: torch.device,
            data_info: DataInfo) -> list[dict[str, Any]]:
    files = expand_inputs(inputs)
    size, how = data_info["image_size"], data_info["fit"]
    rows: list[dict[str, Any]] = []
    for start in range(0, len(files), params.batch_size):  # decode a batch at a time
        chunk = files[start:start + params.batch_size]
        images = [to_chw_uint8(fit(open_rgb(f), size, how)) for f in chunk]
        rows += classify(model, images, [str(f) for f in chunk], data_info["classes"],
                         params.batch_size, device)
    return rows


def predict_inputs(model: torch.nn.Module, params: Params, inputs: list[tuple[str, Any]],
                   device: torch.device, data_info: DataInfo) -> list[dict[str, Any]]:
    """predict's rows for images a request to `serve` brought (serve_inputs)."""
    return classify(model, [image for _, image in inputs], [name for name, _ in inputs],
                    data_info["classes"], params.batch_size, device)


def serve_inputs(body: Any, uploads: list[tuple[str, bytes]], limits: Mapping[str, int],
                 data_info: DataInfo) -> list[tuple[str, Any]]:
    prepare = partial(fit, size=data_info["image_size"], how=data_info["fit"])
    return request_images(body, uploads, limits, prepare)


def export_spec(model: torch.nn.Module, params: Params, data_info: DataInfo) -> ExportSpec:
    size = data_info["image_size"]
    how = {"crop": "scale the shorter side to the size, cut the middle of the longer",
           "pad": "scale the longer side to the size, centre on black"}[data_info["fit"]]
    return classifier_spec(model, size, data_info["classes"], {
        "decode": "any image file, turned upright by its EXIF orientation, as 8-bit RGB "
                  "(transparent pixels laid on white, 16-bit values divided by 257)",
        "resize": {"size": [size, size], "how": data_info["fit"], "rule": how,
                   "filter": "lanczos"},
        "scale": "none outside the graph: it applies (x / 255 - mean) / std itself",
        "mean": data_info["mean"], "std": data_info["std"]})
