"""The HTTP side of `serve`, on aiohttp: routes, limits, and errors as one-line JSON.

aiohttp because it is one well-kept package (aio-libs) that holds all a small model
server needs: an asyncio server, a request-size limit enforced while reading, multipart
uploads, and a client that the tests and the benchmark use; no ASGI server or framework
on top, and no build step for the page.

Routes: GET / (the page), GET /health, GET /info, POST /predict. Every error is
{"error": "<one line>"} with a 4xx status for what the client sent (503 when the queue
is full, 500 only for a failure of the model itself); no request can stop the server.

Listening on a loopback address (the default), the server answers only requests whose
Host names this machine and whose Origin, if any, is a page of this machine: so a web
page elsewhere cannot reach it through the user's browser (DNS rebinding, cross-site
form posts).
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
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_urldispatcher import _default_expect_handler

from torchstarter.errors import UserError
from torchstarter.serve.batcher import Batcher, Busy

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


LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _host_name(value: str) -> str:
    """'localhost:8000' -> 'localhost'; '[::1]:8000' -> '[::1]'."""
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (413, 404, 405...) as one-line JSON too, and a last net:
    whatever else goes wrong is a 500 of one line, its traceback in the server's log."""
    try:
        if request.app["loopback"]:
            _check_local(request)
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
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the client left: there is no one to answer
    except Exception as exc:  # noqa: BLE001 - a bug: one line to the client, the log gets all
        log.error("%s %s failed:\n%s", request.method, request.path,
                  "".join(traceback.format_exception(exc)))
        return error(500, f"the server failed on this request ({type(exc).__name__}); see "
                          f"the server's log")


def _check_local(request: web.Request) -> None:
    host = _host_name(request.headers.get("Host", "")).lower()
    if host not in LOOPBACK_NAMES:
        raise web.HTTPForbidden(text=f"Host {host or '(none)'!r} is not this machine: the "
                                     f"server listens on a loopback address and answers "
                                     f"only localhost (give --host to serve others)")
    origin = request.headers.get("Origin")
    if origin is not None:
        name = _host_name(origin.split("://", 1)[-1].split("/", 1)[0]).lower()
        if name not in LOOPBACK_NAMES:
            raise web.HTTPForbidden(text=f"Origin {origin!r}: a page of another site may "
                                         f"not use this server")


async def refuse_large_bodies(request: web.Request) -> web.StreamResponse | None:
    """Before '100 Continue': a declared body over the limit is refused unread."""
    limit = request.app["limits"]["max_body_bytes"]
    if request.content_length is not None and request.content_length > limit:
        return error(413, f"request body of {request.content_length:,} bytes, over the "
                          f"limit of {limit:,} bytes (--max-body-mb); send fewer or smaller "
                          f"inputs")
    return await _default_expect_handler(request)


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
    batcher: Batcher = request.app["batcher"]
    batcher.arriving += 1  # a batch being gathered may wait for this request
    try:
        body, uploads = await _read(request)
        inputs = await asyncio.get_running_loop().run_in_executor(
            request.app["decoder"], served.parse, body, uploads)
    except UserError as exc:
        return error(400, str(exc))
    finally:
        batcher.arriving -= 1  # and submit() queues it before anything else runs
    try:
        rows = await batcher.submit(inputs)
    except Busy as exc:
        response = error(503, str(exc))
        response.headers["Retry-After"] = "1"
        return response
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
    try:
        if kind == "multipart/form-data":
            return None, await _uploads(request)
        if kind != "application/json":
            raise UserError(f"Content-Type {kind or 'missing'}: send application/json (or "
                            f"multipart/form-data with image files)")
        raw = await request.read()
    except (ValueError, RuntimeError, HttpProcessingError, RequestPayloadError) as exc:
        raise UserError(f"a malformed request body ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); send JSON, or a multipart form of files"
                        ) from None
    return _json(raw), []


async def _uploads(request: web.Request) -> list[tuple[str, bytes]]:
    form = await request.post()  # bounded by client_max_size, as read() is
    uploads = [(field.filename or "upload", field.file.read()) for field in form.values()
               if isinstance(field, web.FileField)]
    if not uploads:
        raise UserError("a multipart request without a file; upload image files "
                        "(e.g. curl -F file=@photo.jpg)")
    return uploads


def _json(raw: bytes) -> Any:
    """Strict UTF-8 (a byte-order mark dropped), as predict reads text: other encodings,
    and the surrogates UTF-8 cannot hold, are refused rather than guessed."""
    try:
        text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"the body is not UTF-8 (byte {exc.start}); send JSON as UTF-8"
                        ) from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" \
            if isinstance(exc, json.JSONDecodeError) else ""
        raise UserError(f"the body is not valid JSON{where}; send a JSON object") from None


def build_app(served: Served, limits: Mapping[str, int], max_batch: int, max_wait: float,
              loopback: bool = True) -> web.Application:
    app = web.Application(client_max_size=limits["max_body_bytes"],
                          middlewares=[json_errors])
    app["served"], app["limits"], app["loopback"] = served, dict(limits), loopback
    app["batcher"] = Batcher(served.predict, max_batch, max_wait, limits["max_waiting"])
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
    app.router.add_post("/predict", predict, expect_handler=refuse_large_bodies)
    return app
