"""`torchstarter serve`: a trained model over HTTP, with a page to try it (see serve/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchstarter.cli.flags import flag, restore_flag


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a trained model over HTTP, with a web page to try it",
        description="Serve a checkpoint: POST /predict takes JSON (NER: {\"sentence\": ...} "
                    "or {\"sentences\": [...]}; images: {\"image\": base64} or a multipart "
                    "upload) and returns predict --json's rows; GET /health; a page at /. "
                    "Requests that arrive together run as one batch.")
    flag(p, "model_dir", required=True, type=Path, help="experiment folder that was trained")
    restore_flag(p, "best", "checkpoint to serve: best (default), last, or a file path")
    flag(p, "host", default="127.0.0.1",
         help="address to listen on (default 127.0.0.1: this machine only)")
    flag(p, "port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    flag(p, "max_batch", type=int, default=32,
         help="most inputs run through the model at once (default 32; 1 turns batching off)")
    flag(p, "max_wait_ms", type=float, default=5.0,
         help="how long a batch waits for more requests to join it (default 5 ms)")
    flag(p, "max_body_mb", type=float, default=10.0,
         help="largest request body in MiB (default 10); larger ones get 413")
    flag(p, "max_items", type=int, default=64,
         help="most sentences or images in one request (default 64)")
    flag(p, "max_tokens", type=int, default=1000,
         help="most tokens in one sentence (NER; default 1000)")
    flag(p, "max_pixels", type=int, default=40_000_000,
         help="most pixels of all the images of one request together, checked before "
              "decoding (default 40,000,000: three 12-megapixel photos)")
    flag(p, "max_waiting", type=int, default=1024,
         help="most inputs waiting for the model; past it requests get 503 (default 1024)")


def run(args: argparse.Namespace) -> int:
    from torchstarter.serve.server import serve

    serve(args.model_dir, args.restore, args.host, args.port, args.max_batch,
          args.max_wait_ms, args.max_body_mb, args.max_items, args.max_tokens,
          args.max_pixels, args.max_waiting)
    return 0
