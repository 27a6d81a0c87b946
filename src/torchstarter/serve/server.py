"""Load a trained model and serve it until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import signal
import sys
from pathlib import Path
from typing import Any

from torchstarter.errors import UserError
from torchstarter.experiment.evaluation import Trained, load_trained
from torchstarter.serve.app import Served


def served_model(trained: Trained, model_dir: Path, restore: str, max_batch: int,
                 limits: dict[str, int]) -> Served:
    task, info = trained.task, trained.data_info or {}
    # predict_inputs cuts its inputs into params.batch_size chunks: one chunk per batch
    params = trained.params.replace(batch_size=max(max_batch, trained.params.batch_size))
    labels = info.get("classes") or info.get("tags") or (
        [str(i) for i in range(params.num_classes)] if "num_classes" in params else None)
    describe = {"task": task.name, "kind": task.serves, "labels": labels,
                "model_dir": str(model_dir), "restore": restore, "epoch": trained.epoch}

    def parse(body: Any, uploads: list[tuple[str, bytes]]) -> list[Any]:
        return task.serve_inputs(body, uploads, limits, trained.data_info)

    def predict(inputs: list[Any]) -> list[dict[str, Any]]:
        return task.predict_inputs(trained.model, params, inputs, trained.device,
                                   trained.data_info)

    for hook in ("serve_inputs", "predict_inputs"):
        if not task.provides(hook):
            raise UserError(f"task '{task.name}' has no {hook}(); add one to the task module "
                            f"to serve it (see torchstarter.engine.task)")
    return Served(describe, parse, predict)


def serve(model_dir: Path, restore: str = "best", host: str = "127.0.0.1", port: int = 8000,
          max_batch: int = 32, max_wait_ms: float = 5.0, max_body_mb: float = 10.0,
          max_items: int = 64, max_tokens: int = 1000, max_pixels: int = 40_000_000,
          max_waiting: int = 1024) -> None:
    _check_flags(host, port, max_batch, max_wait_ms, max_body_mb, max_items, max_tokens,
                 max_pixels, max_waiting)
    try:
        from torchstarter.serve.app import build_app
    except ImportError as exc:
        raise UserError(f"serve needs the {exc.name} package; pip install aiohttp (or "
                        f"pip install 'torchstarter[serve]')") from None
    limits = {"max_body_bytes": int(max_body_mb * 1024 * 1024), "max_items": max_items,
              "max_tokens": max_tokens, "max_pixels": max_pixels, "max_waiting": max_waiting}
    trained = load_trained(model_dir, restore)
    served = served_model(trained, Path(model_dir), restore, max_batch, limits)
    app = build_app(served, limits, max_batch, max_wait_ms / 1000, _is_loopback(host))
    asyncio.run(_run(app, host, port, served))


# Each flag's accepted range: finite, and low enough that a value cannot stall the server
# (a batch waiting an hour) or overflow (a body limit of inf bytes).
RANGES = {"--max-batch": (1, 4096), "--max-wait-ms": (0, 10_000), "--max-body-mb": (0.001, 4096),
          "--max-items": (1, 100_000), "--max-tokens": (1, 1_000_000),
          "--max-pixels": (1, 10**10), "--max-waiting": (1, 10**7), "--port": (0, 65535)}


def _check_flags(host: str, port: int, max_batch: int, max_wait_ms: float,
                 max_body_mb: float, max_items: int, max_tokens: int, max_pixels: int,
                 max_waiting: int) -> None:
    values = {"--max-batch": max_batch, "--max-wait-ms": max_wait_ms,
              "--max-body-mb": max_body_mb, "--max-items": max_items,
              "--max-tokens": max_tokens, "--max-pixels": max_pixels,
              "--max-waiting": max_waiting, "--port": port}
    for name, value in values.items():
        low, high = RANGES[name]
        if not low <= value <= high:  # NaN fails both
            raise UserError(f"{name} {value}: must be between {low:g} and {high:g}")
    if max_waiting < max_items:
        raise UserError(f"--max-waiting {max_waiting}: must be at least --max-items "
                        f"{max_items}, or a full request could never wait")
    if not host.strip():
        raise UserError("--host '': give an address (127.0.0.1 for this machine, 0.0.0.0 "
                        "for every IPv4 interface)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


async def _run(app: Any, host: str, port: int, served: Served) -> None:
    from aiohttp import web

    # handler_cancellation: a client that hangs up cancels its request, which then never
    # reaches the model (batcher.py drops it)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"{host}:{port}: the port is in use; pick another --port (or "
                            f"--port 0 for any free one)") from None
        raise UserError(f"{host}:{port}: cannot listen there ({exc.strerror}); check "
                        f"--host and --port") from None
    urls = [f"http://{f'[{a[0]}]' if ':' in a[0] else a[0]}:{a[1]}/" for a in runner.addresses]
    d = served.describe
    print(f"serving {d['task']} ({d['model_dir']}, {d['restore']}, epoch {d['epoch']}) at "
          f"{' and '.join(urls)}  (POST /predict, GET /health; Ctrl-C stops)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        print("stopping", file=sys.stderr, flush=True)
        await runner.cleanup()
