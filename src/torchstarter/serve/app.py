"""The HTTP side of `serve`, on aiohttp: routes, limits, and errors as one-line JSON.

aiohttp because it is one well-kept package (aio-libs) that holds all a small model
server needs: an asyncio server, a request-size limit enforced while reading, multipart
uploads, and a client that the tests and the benchmark use; no ASGI server or framework
on top, and no build step for the page.

Routes: GET / (the page), GET /health, GET /info, POST /predict. Every error is
{"error": "<one line>"} with a 4xx status for what the client sent (5xx only for a
failure of the model itself); no request can stop the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from torchstarter.errors import UserError
from torchstarter.serve.batcher import Batcher

log = logging.getLogger("torchstarter.serve")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Served:
    """What the routes need of the model: its description and its two task hooks."""

    describe: dict[str, Any]  # task, kind, labels, weights: for /info and /health
    parse: Callable[[Any, list[tuple[str, bytes]]], list[Any]]  # request -> inputs
    predict: Callable[[list[Any]], list[dict[str, Any]]]  # inputs -> predict's rows


def error(status: int, message: str) -> web.Response:
    one_line = " ".join(str(message).split())
    return web.json_response({"error": one_line}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (413, 404, 405...) as one-line JSON too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") \
            else exc.reason
        if exc.status == 413:
            reason = (f"request body over the limit of "
                      f"{request.app['limits']['max_body_bytes']:,} bytes (--max-body-mb); "
                      f"send fewer or smaller inputs")
        return error(exc.status, reason)


async def page(request: web.Request) -> web.Response:
    html = resources.files("torchstarter.serve").joinpath("page.html").read_text("utf-8")
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def health(request: web.Request) -> web.Response:
    served: Served = request.app["served"]
    return web.json_response({"status": "ok", **served.describe,
                              "batching": request.app["batcher"].state_dict()})


async def info(request: web.Request) -> web.Response:
    return web.json_response({**request.app["served"].describe,
                              "limits": request.app["limits"]})


async def predict(request: web.Request) -> web.Response:
    served: Served = request.app["served"]
    try:
        body, uploads = await _read(request)
        inputs = await asyncio.get_running_loop().run_in_executor(
            request.app["decoder"], served.parse, body, uploads)
    except UserError as exc:
        return error(400, str(exc))
    try:
        rows = await request.app["batcher"].submit(inputs)
    except UserError as exc:
        return error(400, str(exc))
    except Exception as exc:  # noqa: BLE001 - the model failed: say so, keep serving
        log.error("predict failed:\n%s", "".join(traceback.format_exception(exc)))
        return error(500, f"the model failed on this request ({type(exc).__name__}); "
                          f"see the server's log")
    return web.json_response(rows)


async def _read(request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
    """(parsed JSON body, []) or (None, [(file name, bytes), ...]) for a multipart form."""
    kind = request.content_type
    if kind == "multipart/form-data":
        form = await request.post()  # bounded by client_max_size, as read() is
        uploads = [(field.filename, field.file.read()) for field in form.values()
                   if isinstance(field, web.FileField)]
        if not uploads:
            raise UserError("a multipart request without a file; upload image files "
                            "(e.g. curl -F file=@photo.jpg)")
        return None, uploads
    if kind != "application/json":
        raise UserError(f"Content-Type {kind or 'missing'}: send application/json (or "
                        f"multipart/form-data with image files)")
    raw = await request.read()
    try:
        return json.loads(raw), []
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" \
            if isinstance(exc, json.JSONDecodeError) else ""
        raise UserError(f"the body is not valid JSON{where}; send a JSON object") from None


def build_app(served: Served, limits: Mapping[str, int], max_batch: int, max_wait: float
              ) -> web.Application:
    app = web.Application(client_max_size=limits["max_body_bytes"],
                          middlewares=[json_errors])
    app["served"], app["limits"] = served, dict(limits)
    app["batcher"] = Batcher(served.predict, max_batch, max_wait)
    app["decoder"] = ThreadPoolExecutor(1, thread_name_prefix="decode")

    async def start(app: web.Application) -> None:
        app["batcher"].start()

    async def stop(app: web.Application) -> None:
        await app["batcher"].close()
        app["decoder"].shutdown(wait=False, cancel_futures=True)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/", page)
    app.router.add_get("/health", health)
    app.router.add_get("/info", info)
    app.router.add_post("/predict", predict)
    return app
