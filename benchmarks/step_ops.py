"""What the training loop adds to a step, counted in device operations: a GPU proxy.

On a GPU, small models such as SIGNS and the NER tagger spend their step launching
kernels, not computing, so a step costs about what its operations cost to launch. This
counts, on any machine, the operations per training step that launch a kernel on a GPU
(views, allocations and host reads excluded), for the plain loops of gpu_speed.py (Adam
with foreach, the GPU default) and for torchstarter's epoch, which also computes its
exact metrics. It measures structure, not time: run gpu_speed.py on a GPU for time.

    python benchmarks/step_ops.py
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import torch
from tabulate import tabulate
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_speed as gs  # noqa: E402

import torchstarter.engine.trainer as trainer_module  # noqa: E402

NO_KERNEL = {"view", "_unsafe_view", "as_strided", "slice", "select", "narrow", "expand",
             "unsqueeze", "squeeze", "t", "transpose", "permute", "detach", "alias", "split",
             "split_with_sizes", "unbind", "empty", "empty_strided", "empty_like",
             "new_empty", "new_empty_strided", "_reshape_alias", "lift_fresh",
             "resolve_conj", "resolve_neg", "_local_scalar_dense", "set_", "reshape",
             "_record_function_enter_new", "_record_function_exit"}
STEPS = 8


class Launches(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in NO_KERNEL:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def per_step(factory, steps: int) -> tuple[float, collections.Counter[str]]:
    _, run_epoch = factory()
    run_epoch(1)  # warm-up
    with Launches() as launches:
        run_epoch(2)
    return sum(launches.ops.values()) / steps, launches.ops


def main() -> None:
    device = torch.device("cpu")
    signs, ner = gs.sample_data("signs"), gs.sample_data("ner")
    groups = trainer_module.batch_groups  # torchstarter's epochs: the first STEPS batches
    trainer_module.batch_groups = lambda data, order, size: groups(data, order, size)[:STEPS]
    rows = []
    for task, variant, factory, steps in [
        ("signs", "plain loop (foreach Adam)",
         lambda: gs.plain_signs_epoch(signs, device, foreach=True), None),
        ("signs", "torchstarter, reference params",
         lambda: gs.torchstarter_epoch(gs.SIGNS_REF, signs, device), STEPS),
        ("ner", "plain loop (foreach Adam), batch 5",
         lambda: gs.plain_ner_epoch(ner, device, 5, foreach=True), None),
        ("ner", "torchstarter, reference params, batch 5",
         lambda: gs.torchstarter_epoch(gs.NER_REF, ner, device), STEPS),
    ]:
        if steps is None:  # the plain loops run whole epochs of the sample
            n = factory()[0]
            steps = -(-n // (32 if task == "signs" else 5))
        count, ops = per_step(factory, steps)
        top = ", ".join(f"{name} {k / steps:.0f}" for name, k in ops.most_common(6))
        rows.append([task, variant, f"{count:.1f}", top])
    print(tabulate(rows, headers=["task", "loop", "ops / step", "most frequent"]))


if __name__ == "__main__":
    main()
