"""Load a trained model and serve it until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
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
          max_items: int = 64, max_tokens: int = 1000) -> None:
    for name, value, low in (("--max-batch", max_batch, 1), ("--max-items", max_items, 1),
                             ("--max-tokens", max_tokens, 1), ("--max-wait-ms", max_wait_ms, 0),
                             ("--max-body-mb", max_body_mb, 0.001), ("--port", port, 0)):
        if not value >= low:
            raise UserError(f"{name} {value}: must be at least {low}")
    if port > 65535:
        raise UserError(f"--port {port}: must be at most 65535")
    try:
        from torchstarter.serve.app import build_app
    except ImportError as exc:
        raise UserError(f"serve needs the {exc.name} package; pip install aiohttp (or "
                        f"pip install 'torchstarter[serve]')") from None
    limits = {"max_body_bytes": int(max_body_mb * 1024 * 1024), "max_items": max_items,
              "max_tokens": max_tokens}
    trained = load_trained(model_dir, restore)
    served = served_model(trained, Path(model_dir), restore, max_batch, limits)
    app = build_app(served, limits, max_batch, max_wait_ms / 1000)
    asyncio.run(_run(app, host, port, served))


async def _run(app: Any, host: str, port: int, served: Served) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
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
    bound = runner.addresses[0]
    url_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    d = served.describe
    print(f"serving {d['task']} ({d['model_dir']}, {d['restore']}, epoch {d['epoch']}) at "
          f"http://{url_host}:{bound[1]}/  (POST /predict, GET /health; Ctrl-C stops)",
          flush=True)
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
