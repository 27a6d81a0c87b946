"""A `torchstarter serve` subprocess on a free loopback port, and a plain HTTP client."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class Server:
    """Started with --port 0: the server picks a free port and prints its URL."""

    def __init__(self, model_dir: Path, *flags: str, timeout: float = 60):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "torchstarter", "serve", "--model-dir", str(model_dir),
             "--port", "0", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line = self.process.stdout.readline()
                break
            if self.process.poll() is not None:
                break
        found = re.search(r"http://[^ ]+/", line)
        if not found:
            self.stop()
            raise AssertionError(f"the server did not start: {line!r} "
                                 f"{self.process.stderr.read()!r}")
        self.url = found.group(0)

    def request(self, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        headers = {"Content-Type": content_type} if body is not None else {}
        req = urllib.request.Request(self.url + path.lstrip("/"), data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def post(self, payload: Any) -> tuple[int, Any]:
        return self.request("predict", json.dumps(payload).encode())

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode, self.process.stderr.read()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def multipart(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, str]:
    """A multipart/form-data body of files, and its Content-Type."""
    boundary = "torchstarter-test-boundary"
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                     f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"
