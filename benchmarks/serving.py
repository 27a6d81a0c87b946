"""`torchstarter serve` under load, against the same model's predict in-process.

For SIGNS (single 64x64 images, base64 in JSON) and NER (single sentences), two servers
run side by side on loopback: one batching (--max-batch 32 --max-wait-ms 5) and one not
(--max-batch 1). For 1, 8 and 32 concurrent clients, each client sends one request after
another for --seconds; batching and not alternate, so drift hits both alike. Reported:
requests per second, p50 and p99 latency, and the ratio to the in-process ceiling: the
task's serve_inputs + predict_inputs called directly (no HTTP), one input at a time and
32 at a time. Client and server share this machine's cores, as a user's test would.

Models: SIGNS's base_model params and NER's tuned params (BiLSTM + char CNN + CRF),
trained briefly (speed does not depend on accuracy) on real SIGNS and the built-in NER
sample (real data is used where ../shared/data has it).

    python benchmarks/serving.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import torch
from _common import SHARED_SIGNS, build_signs, machine_line

from torchstarter.experiment.evaluation import load_trained
from torchstarter.experiment.training import train
from torchstarter.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
LIMITS = {"max_body_bytes": 10 << 20, "max_items": 64, "max_tokens": 1000,
          "max_pixels": 40_000_000, "max_waiting": 1024}


def trained_models(root: Path) -> dict[str, tuple[Path, Path, list[dict]]]:
    """task -> (model dir, data dir, request bodies)."""
    out = {}
    signs = load_task("signs")
    if SHARED_SIGNS.is_dir():
        data = build_signs(SHARED_SIGNS)
    else:
        signs.write_sample_data(root / "signs_raw")
        data = root / "signs_data"
        signs.build_dataset(signs.build_options(root / "signs_raw", data))
    params = json.loads((REPO / "experiments/signs/base_model/params.json").read_text())
    out["signs"] = (_train(root / "signs", data, {**params, "num_epochs": 1}), data, [
        {"image": base64.b64encode(f.read_bytes()).decode()}
        for f in sorted((data / "test_signs").iterdir())[:64]])
    ner = load_task("ner")
    ner.write_sample_data(root / "ner_raw")
    data = root / "ner_data"
    ner.build_dataset(ner.build_options(root / "ner_raw", data))
    ner.build_vocab(ner.vocab_options(data))
    params = json.loads((REPO / "experiments/ner/tuned/params.json").read_text())
    sentences = (data / "test" / "sentences.txt").read_text().splitlines()
    out["ner"] = (_train(root / "ner", data, {**params, "num_epochs": 2}), data,
                  [{"sentence": s} for s in sentences])
    return out


def _train(model_dir: Path, data: Path, params: dict) -> Path:
    model_dir.mkdir(parents=True)
    (model_dir / "params.json").write_text(json.dumps({**params, "tensorboard": False}))
    train(model_dir, data, console=False)
    return model_dir


class Server:
    def __init__(self, model_dir: Path, *flags: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "torchstarter", "serve", "--model-dir", str(model_dir),
             "--port", "0", *flags], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        self.url = line.split(" at ", 1)[1].split()[0] + "predict"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


async def load(url: str, bodies: list[dict], clients: int, seconds: float
               ) -> tuple[float, list[float]]:
    """Requests per second and every latency (s) of `clients` looping clients."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            started = time.perf_counter()
            async with session.post(url, json=bodies[i % len(bodies)]) as response:
                await response.read()
                assert response.status == 200, await response.text()
            latencies.append(time.perf_counter() - started)
            i += clients

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session, k) for k in range(clients)))
        wall = time.perf_counter() - started
    return len(latencies) / wall, latencies


def in_process(model_dir: Path, bodies: list[dict], batch: int, seconds: float) -> float:
    """Inputs per second of serve_inputs + predict_inputs, called directly."""
    trained = load_trained(model_dir)
    task = trained.task
    params = trained.params.replace(batch_size=max(batch, trained.params.batch_size))
    done, i = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        chunk = [bodies[(i + j) % len(bodies)] for j in range(batch)]
        key = next(iter(chunk[0]))
        many = {key + "s": [b[key] for b in chunk]}
        inputs = task.serve_inputs(many, [], LIMITS, trained.data_info)
        task.predict_inputs(trained.model, params, inputs, trained.device, trained.data_info)
        done += batch
        i += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    print(machine_line())
    root = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    models = trained_models(root)
    for task, (model_dir, _, bodies) in models.items():
        ceiling1 = in_process(model_dir, bodies, 1, args.seconds)
        ceiling32 = in_process(model_dir, bodies, 32, args.seconds)
        print(f"\n{task}: in-process serve_inputs + predict_inputs: {ceiling1:.0f} inputs/s "
              f"one at a time, {ceiling32:.0f} inputs/s 32 at a time")
        servers = {"batching": Server(model_dir, "--max-batch", "32", "--max-wait-ms", "5"),
                   "no batching": Server(model_dir, "--max-batch", "1")}
        try:
            for server in servers.values():  # warm up: first calls allocate
                asyncio.run(load(server.url, bodies, 4, 1.0))
            print(f"{'clients':>7} {'server':>12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'/ in-process 1':>15} {'/ in-process 32':>16}")
            for clients in (1, 8, 32):
                for name, server in servers.items():
                    rps, lat = asyncio.run(load(server.url, bodies, clients, args.seconds))
                    q = statistics.quantiles(lat, n=100)
                    print(f"{clients:>7} {name:>12} {rps:>8.0f} {1000 * q[49]:>8.1f} "
                          f"{1000 * q[98]:>8.1f} {rps / ceiling1:>15.2f} "
                          f"{rps / ceiling32:>16.2f}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    print(f"\ntorch threads in each server: {torch.get_num_threads()} (the default)")


if __name__ == "__main__":
    main()
