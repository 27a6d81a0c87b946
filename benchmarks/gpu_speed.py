"""GPU speed of both tasks: torchstarter's training epoch against a plain loop, same device.

For SIGNS (reference params, batch 32) and Kaggle NER (reference params at batch 5 and
64) it reports seconds per training epoch (median of the timed epochs, after a warm-up
epoch), samples per second, the ratio to a plain PyTorch loop on the same device with
the data already there, and the effect of each speed option (channels_last, bf16,
fp16, torch.compile "reduce-overhead", i.e. CUDA graphs, where shapes are static).
The issue's targets on one H100: SIGNS <= 0.05 s/epoch; NER batch 5 <= 10 s, batch 64
<= 1.5 s. It needs the real data (it refuses to time the samples as if they were);
--quick runs on the built-in samples, to check the script. Rows come in order of
importance (the plain loop and the reference params of each target first), each printed
as soon as it is measured, and an option that fails prints its error in its row instead
of ending the run. One command, meant to finish within 5 minutes on one H100 (not yet
timed there: no GPU so far):

    python benchmarks/gpu_speed.py [--signs-raw DIR] [--ner-corpus ZIP] [--device cuda]
    python benchmarks/gpu_speed.py --device cpu --quick     # a smoke run of the script

The plain loops are what a user writes by hand: data already on the device, the epoch
order drawn on the host, torch.optim.Adam with its defaults (foreach on a GPU), no
metrics; a "fused Adam" row shows how much of the difference is torchstarter's fused
optimizer. Compiled rows get two warm-up epochs (the short last batch makes the second
epoch recompile). On a GPU it also counts the host-device synchronisations of one
torchstarter epoch (torch.cuda.set_sync_debug_mode), which should be about two per
save_summary_steps steps plus a few per epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import REPO, SHARED_NER, SHARED_SIGNS, build_ner, build_signs, refuse
from tabulate import tabulate

from torchstarter.engine.batching import place
from torchstarter.engine.build import build_trainer
from torchstarter.engine.rng import seed_everything
from torchstarter.tasks import load_task
from torchstarter.tasks.registry import resolve_params

SIGNS_REF = json.loads((REPO / "experiments/signs/base_model/params.json").read_text())
NER_REF = json.loads((REPO / "experiments/ner/base_model/params.json").read_text())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_epochs(run_epoch: Callable[[int], object], epochs: int, device: torch.device,
                 warmup: int = 1) -> float:
    for epoch in range(1, warmup + 1):  # allocator, cuDNN heuristics, compilation, graphs
        run_epoch(epoch)
    times = []
    for epoch in range(warmup + 1, warmup + epochs + 1):
        sync(device)
        started = time.perf_counter()
        run_epoch(epoch)
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sample_data(task_name: str) -> Path:
    task = load_task(task_name)
    root = Path(tempfile.mkdtemp(prefix=f"{task_name}-sample-"))
    task.write_sample_data(root / "raw")
    task.build_dataset(task.build_options(root / "raw", root / "data"))
    if task.provides("build_vocab"):
        task.build_vocab(task.vocab_options(root / "data", min_count=1))
    return root / "data"


def torchstarter_epoch(base: dict, data_dir: Path, device: torch.device, **changes):
    task, params = resolve_params({**base, **changes, "device": device.type}, "benchmark")
    info = task.describe_data(params, data_dir)
    seed_everything(params.seed)
    trainer = build_trainer(task, params, device, info)
    train = place(task.load_split(params, data_dir, "train", info), device)
    return len(train), lambda epoch: trainer.train_epoch(train, epoch)


def plain_signs_epoch(data_dir: Path, device: torch.device, **adam: bool):
    """What a user writes by hand: data on the device, flips, Adam, no metrics."""
    task, params = resolve_params({**SIGNS_REF, "device": device.type}, "benchmark")
    data = task.load_split(params, data_dir, "train", None)
    x_all, y_all = data.inputs.to(device), data.labels.to(device)
    seed_everything(230)
    model = task.build_model(params, None).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=params.learning_rate, **adam)

    def epoch(_: int) -> None:
        model.train()
        for idx in torch.randperm(len(y_all)).split(params.batch_size):
            idx = idx.to(device, non_blocking=True)
            x, y = x_all[idx], y_all[idx]
            flip = torch.rand(len(y), device=device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return len(y_all), epoch


def plain_ner_epoch(data_dir: Path, device: torch.device, batch_size: int, **adam: bool):
    """Padded tensors on the device, cut to each batch's longest sentence, masked loss."""
    task, params = resolve_params({**NER_REF, "batch_size": batch_size,
                                   "device": device.type}, "benchmark")
    info = task.describe_data(params, data_dir)
    data = place(task.load_split(params, data_dir, "train", info), device)
    seed_everything(230)
    model = task.build_model(params, info).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=params.learning_rate, **adam)

    def epoch(_: int) -> None:
        model.train()
        for idx in torch.randperm(len(data)).split(batch_size):  # host order: no sync
            inputs, tags = data.get_batch(idx)
            emissions = model(inputs).emissions
            loss = F.cross_entropy(emissions.reshape(-1, emissions.shape[-1]),
                                   tags.reshape(-1), ignore_index=-1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return len(data), epoch


TARGETS = {("signs", 32): 0.05, ("ner", 5): 10.0, ("ner", 64): 1.5}  # s / epoch, one H100


def build_cases(signs_dir: Path, ner_dir: Path, device: torch.device, only: str | None,
                quick: bool) -> list[tuple[str, str, int, Callable]]:
    """(task, variant, batch, factory), the target configurations first.

    The first rows of each task are the plain loop and torchstarter with the reference
    params, so that a run cut short still answers the targets; the options follow.
    """
    gpu = device.type == "cuda"

    def ours(base: dict, data: Path, **changes) -> Callable:
        return lambda: torchstarter_epoch(base, data, device, **changes)

    signs = [
        ("plain loop, fp32", 32, lambda: plain_signs_epoch(signs_dir, device)),
        ("torchstarter, reference params", 32, ours(SIGNS_REF, signs_dir)),
        ("plain loop, fused Adam", 32, lambda: plain_signs_epoch(signs_dir, device, fused=True)),
        ("- channels_last (NCHW)", 32, ours(SIGNS_REF, signs_dir, channels_last=False)),
        ("+ bf16", 32, ours(SIGNS_REF, signs_dir, precision="bf16")),
    ]
    if gpu or quick:  # a CPU emulates fp16: 13x slower than fp32 on SIGNS, not worth timing
        signs.append(("+ fp16 (loss scaling)", 32, ours(SIGNS_REF, signs_dir, precision="fp16")))
    if gpu:  # on a CPU, compilation takes minutes and CUDA graphs do not exist
        signs += [("+ compile reduce-overhead (CUDA graphs)", 32,
                   ours(SIGNS_REF, signs_dir, compile="reduce-overhead")),
                  ("+ bf16 + compile reduce-overhead", 32,
                   ours(SIGNS_REF, signs_dir, precision="bf16", compile="reduce-overhead"))]
    ner = []
    for batch in (5, 64):
        ner += [("plain loop, fp32", batch,
                 lambda b=batch: plain_ner_epoch(ner_dir, device, b)),
                ("torchstarter, reference params", batch,
                 ours(NER_REF, ner_dir, batch_size=batch))]
    ner.append(("plain loop, fused Adam", 64,
                lambda: plain_ner_epoch(ner_dir, device, 64, fused=True)))
    for batch in (5, 64):
        ner += [("+ bucket_by_length", batch,
                 ours(NER_REF, ner_dir, batch_size=batch, bucket_by_length=True)),
                ("+ bf16", batch, ours(NER_REF, ner_dir, batch_size=batch, precision="bf16"))]
        if gpu:  # widths rounded to 16 tokens: a few static shapes, one CUDA graph each
            ner.append(("+ bucket, pad_to_multiple 16, compile reduce-overhead", batch,
                        ours(NER_REF, ner_dir, batch_size=batch, bucket_by_length=True,
                             pad_to_multiple=16, compile="reduce-overhead")))
    cases = []
    if only in (None, "signs"):
        cases += [("signs", v, b, f) for v, b, f in signs]
    if only in (None, "ner"):
        cases += [("ner", v, b, f) for v, b, f in ner]
    return cases


def count_syncs(factory: Callable, device: torch.device) -> tuple[int, int]:
    """(host-device synchronisations, examples) in one epoch after a warm-up epoch."""
    n, run_epoch = factory()
    run_epoch(1)
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run_epoch(2)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    return syncs, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signs-raw", type=Path, default=SHARED_SIGNS)
    parser.add_argument("--ner-corpus", type=Path, default=SHARED_NER)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=5, help="timed SIGNS epochs")
    parser.add_argument("--only", choices=("signs", "ner"), help="measure one task")
    parser.add_argument("--quick", action="store_true",
                        help="sample data and one timed epoch: checks the script runs")
    args = parser.parse_args()
    started = time.perf_counter()
    device = torch.empty(0, device=args.device).device  # "cuda" -> "cuda:0", as train uses
    gpu = device.type == "cuda"
    if args.quick:
        signs_dir, ner_dir = sample_data("signs"), sample_data("ner")
    else:
        for path, flag in ((args.signs_raw, "--signs-raw"), (args.ner_corpus, "--ner-corpus")):
            if not path.exists():
                refuse(f"{path}: not found; pass {flag} (real data is needed for the "
                       f"targets), or --quick for a smoke run on the built-in samples")
        signs_dir, ner_dir = build_signs(args.signs_raw), build_ner(args.ner_corpus)
    print(f"data built in {time.perf_counter() - started:.0f} s", flush=True)
    rows, plain, ours = [], {}, {}
    for task, variant, batch, factory in build_cases(signs_dir, ner_dir, device, args.only,
                                                     args.quick):
        epochs = 1 if args.quick else (args.epochs if task == "signs" else 1 if batch == 5
                                       else 2)
        compiled = "compile" in variant
        try:
            n, run_epoch = factory()
            seconds = timed_epochs(run_epoch, epochs, device, warmup=2 if compiled else 1)
        except Exception as exc:  # one option failing must not cost the other rows
            first = (str(exc).strip().splitlines() or [""])[0][:120]
            rows.append([task, variant, batch, "failed", type(exc).__name__, first])
            print("  ", rows[-1], flush=True)
            continue
        finally:
            if compiled:
                torch._dynamo.reset()  # the next case compiles its own model from scratch
            if gpu:
                torch.cuda.empty_cache()
        if variant.startswith("plain loop, fp32"):
            plain[(task, batch)] = seconds
        elif variant.startswith("torchstarter"):
            ours[(task, batch)] = seconds
        base = plain.get((task, batch))
        rows.append([task, variant, batch, f"{seconds:.3f}", f"{n / seconds:,.0f}",
                     f"{seconds / base:.2f}" if base else "-"])
        print("  ", rows[-1], flush=True)
    name = torch.cuda.get_device_name(device) if gpu else "CPU"
    real = not args.quick
    print(f"\n{name}, torch {torch.__version__}, "
          f"{'real data' if real else 'built-in samples (not comparable to targets)'}, "
          f"{time.perf_counter() - started:.0f} s in all")
    print(tabulate(rows, headers=["task", "variant", "batch", "s / train epoch",
                                  "samples/s", "time vs plain loop"]))
    print("\ntargets (torchstarter with the reference params; the issue's numbers are for "
          "one H100):")
    for (task, batch), target in TARGETS.items():
        got = ours.get((task, batch))
        if got is None:
            verdict = "not measured"
        elif real and gpu:
            verdict = f"{got:.3f} s: {'met' if got <= target else 'missed'}"
        else:
            verdict = f"{got:.3f} s (no verdict: the targets are for real data on a GPU)"
        print(f"  {task} batch {batch}: <= {target} s per epoch -> {verdict}")
    if gpu:
        print("\nhost-device synchronisations in one torchstarter epoch (reference params):")
        for task, base, data, batch in (("signs", SIGNS_REF, signs_dir, 32),
                                        ("ner", NER_REF, ner_dir, 64)):
            if args.only not in (None, task):
                continue
            try:
                syncs, n = count_syncs(lambda b=base, d=data, bs=batch: torchstarter_epoch(
                    b, d, device, batch_size=bs), device)
                print(f"  {task} batch {batch}: {syncs} in {-(-n // batch)} steps")
            except Exception as exc:
                print(f"  {task}: could not count ({type(exc).__name__}: {exc})")


if __name__ == "__main__":
    main()
