"""What every image classifier shares once trained: rows of class probabilities, images
taken from an HTTP request, and the exported form of the network.

predict (files on disk) and serve (bytes in a request) both end in `classify`, so the
two give the same rows for the same picture.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

from torchstarter.engine.export_spec import ExportSpec
from torchstarter.errors import UserError
from torchstarter.tasks.vision.decode import open_rgb, to_chw_uint8

IMAGE_FIELDS = "send {\"image\": \"<base64>\"}, {\"images\": [\"<base64>\", ...]} or a " \
               "multipart upload of image files"


@torch.inference_mode()
def classify(model: torch.nn.Module, images: list[np.ndarray], names: list[Any],
             classes: list[Any], batch_size: int, device: torch.device
             ) -> list[dict[str, Any]]:
    """One row per image ([3, S, S] uint8): its file name, class and class probabilities."""
    model.eval()
    rows = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.stack(images[start:start + batch_size])).to(device)
        probs = torch.softmax(model(batch).float(), dim=1).cpu()
        for name, p in zip(names[start:start + batch_size], probs, strict=True):
            rows.append({"file": name, "label": classes[int(p.argmax())],
                         "probabilities": {str(c): round(float(v), 4)
                                           for c, v in zip(classes, p, strict=True)}})
    return rows


def request_images(body: Any, uploads: list[tuple[str, bytes]], limits: Mapping[str, int],
                   prepare: Callable[[Image.Image], Image.Image]) -> list[tuple[str, Any]]:
    """(name, [3, S, S] uint8 array) per image of a request: base64 strings in a JSON body
    ({"image": ...} or {"images": [...]}) or uploaded files; each decoded as a file would
    be (same refusals), then shaped by `prepare` as build-dataset does. The pixels of all
    the request's images together are limited (limits["max_pixels"], checked from each
    header before decoding), since decoding costs time and memory per pixel, not per
    byte: a 6 kB PNG may hold 50 megapixels."""
    if uploads:
        items = [(name or f"upload {i}", data) for i, (name, data) in enumerate(uploads)]
    else:
        items = [(f"image {i}", _base64(value, i)) for i, value in enumerate(_items(body))]
    if not items:
        raise UserError(f"no image in the request; {IMAGE_FIELDS}")
    if len(items) > limits["max_items"]:
        raise UserError(f"{len(items)} images in one request, more than --max-items "
                        f"{limits['max_items']}; send them in smaller requests")
    budget, images = limits["max_pixels"], []
    for name, data in items:  # the limit is the request's: each image spends from it
        image = open_rgb(name, data=data, max_pixels=budget)
        budget -= image.width * image.height
        images.append((name, to_chw_uint8(prepare(image))))
    return images


def _items(body: Any) -> list[Any]:
    if not isinstance(body, dict) or len(body) != 1 or not ({"image", "images"} & set(body)):
        raise UserError(f"a JSON object with one field, 'image' or 'images', was expected; "
                        f"{IMAGE_FIELDS}")
    if "image" in body:
        return [body["image"]]
    if not isinstance(body["images"], list):
        raise UserError(f"'images' must be a list of base64 strings; {IMAGE_FIELDS}")
    return body["images"]


def _base64(value: Any, i: int) -> bytes:
    if not isinstance(value, str):
        raise UserError(f"image {i}: a base64 string was expected, not "
                        f"{type(value).__name__}; {IMAGE_FIELDS}")
    text = value.split(",", 1)[-1] if value.startswith("data:") else value  # a data: URL
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"image {i}: not valid base64; {IMAGE_FIELDS}") from None


class ProbabilitiesOf(torch.nn.Module):
    """uint8 images -> (class logits, predicted class): the classifier as exported."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(images).float()
        return logits, logits.argmax(dim=1)


def classifier_spec(model: torch.nn.Module, image_size: int, classes: list[Any],
                    preprocessing: dict[str, Any]) -> ExportSpec:
    """The export of a network from uint8 RGB images [N, 3, S, S] to class logits."""
    model = model.eval()

    def reference(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            logits = model(images).float()
        return logits, logits.argmax(dim=1)

    return ExportSpec(
        module=ProbabilitiesOf(model).eval(),
        inputs={"images": {0: "batch"}},
        example={"images": torch.randint(0, 256, (2, 3, image_size, image_size),
                                         dtype=torch.uint8)},
        outputs=("logits", "label"),
        feed=lambda images: {"images": images.cpu()},
        reference=reference,
        metadata={
            "inputs": {"images": {"dtype": "uint8", "shape": ["batch", 3, image_size,
                                                             image_size],
                                  "layout": "NCHW, RGB, values 0-255"}},
            "outputs": {"logits": {"dtype": "float32", "shape": ["batch", len(classes)]},
                        "label": {"dtype": "int64", "shape": ["batch"],
                                  "meaning": "index into classes (argmax of logits)"}},
            "preprocessing": preprocessing,
            "classes": [str(c) for c in classes],
            "probabilities": "softmax over logits",
        })
