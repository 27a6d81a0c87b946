"""`torchstarter serve` as a user runs it: a subprocess on a loopback port, many clients at
once, hostile requests; every answer checked against `predict`."""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from serving import Server, multipart
from test_cli_end_to_end import cli

pytest.importorskip("aiohttp", reason="serve needs aiohttp (pip install -e '.[dev]')")

SENTENCES = ["John Smith lives in New York .", "Mary went to Berlin on Monday .", "Hello",
             "The UN said 25 people died in IRAQ and Syria last week .",
             "Apple and Microsoft shares rose 3 percent .", "Paris", "a b c d e f g h i j",
             "Prime Minister Tony Blair spoke in London ."]


def same_rows(got: list[dict], expected: list[dict]) -> None:
    """Equal but for the 4th decimal of a probability: a batch of other inputs may sum in
    another order."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert {k: v for k, v in g.items() if k != "probabilities"} == \
            {k: v for k, v in e.items() if k != "probabilities"}
        gp, ep = g["probabilities"], e["probabilities"]
        pairs = zip(gp, ep, strict=True) if isinstance(gp, list) else \
            ((gp[k], ep[k]) for k in ep)
        assert all(abs(a - b) <= 2e-4 for a, b in pairs)


def test_concurrent_sentences_get_exactly_predicts_rows(shipped):
    model = shipped("ner")
    expected = json.loads(cli("predict", "--model-dir", model.model_dir, "--json",
                              *SENTENCES).stdout)
    with Server(model.model_dir, "--max-batch", "8", "--max-wait-ms", "20") as server:
        jobs = [{"sentence": s} for s in SENTENCES] * 4 + [{"sentences": SENTENCES}] * 3 + \
            [{"sentences": [s.split() for s in SENTENCES[:3]]}]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(server.post, jobs))
        for job, (status, rows) in zip(jobs, answers, strict=True):
            assert status == 200, rows
            if "sentence" in job:
                want = [expected[SENTENCES.index(job["sentence"])]]
            else:
                want = expected[:len(job["sentences"])]
            same_rows(rows, want)
        status, health = server.request("health")
        assert status == 200 and health["task"] == "ner"
        assert health["batching"]["inputs"] == 4 * 8 + 3 * 8 + 3
        assert health["batching"]["batches"] < len(jobs)  # requests did share batches


def test_concurrent_images_base64_and_uploads_get_predicts_rows(shipped):
    model = shipped("images")
    files = sorted((model.raw_dir / "test").rglob("*.png"))[::9][:6]
    expected = {f.name: row for f, row in zip(files, json.loads(cli(
        "predict", "--model-dir", model.model_dir, "--json", *files).stdout), strict=True)}
    with Server(model.model_dir) as server:
        def send(i: int) -> tuple[str, tuple[int, list]]:
            f = files[i % len(files)]
            if i % 2:
                body, kind = multipart([(f.name, f.read_bytes())])
                return f.name, server.request("predict", body, kind)
            return f.name, server.post({"image": base64.b64encode(f.read_bytes()).decode()})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(24)))
    for name, (status, rows) in answers:
        assert status == 200, rows
        want = dict(expected[name])
        want["file"] = rows[0]["file"]  # an upload is named by its file name, base64 by index
        same_rows(rows, [want])
        assert rows[0]["file"] in (name, "image 0")


def test_batching_joins_requests_that_arrive_together_and_max_batch_1_does_not(shipped):
    model = shipped("ner")
    for flags, joined in ((["--max-batch", "16", "--max-wait-ms", "300"], True),
                          (["--max-batch", "1"], False)):
        with Server(model.model_dir, *flags) as server, ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(server.post, [{"sentence": "John went home ."}] * 16))
            assert all(status == 200 for status, _ in answers)
            batching = server.request("health")[1]["batching"]
        assert batching["inputs"] == 16
        if joined:
            assert batching["largest_batch"] > 1 and batching["batches"] < 16
        else:
            assert batching["largest_batch"] == 1 and batching["batches"] == 16


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


NER_BAD = [  # (body, content type, status, words of the one-line error)
    (b"{\"sentence\": ", "application/json", 400, "not valid JSON"),
    (b"\xff\xfe{}", "application/json", 400, "the body is not UTF-8 (byte 0)"),
    (b"[" * 100_000, "application/json", 400, "not valid JSON"),
    (b"{\"text\": \"John\"}", "application/json", 400, "one field, 'sentence' or 'sentences'"),
    (b"{\"sentence\": 42}", "application/json", 400, "a string or a list of tokens"),
    (b"{\"sentences\": []}", "application/json", 400, "'sentences' is empty"),
    (b"{\"sentence\": \"   \"}", "application/json", 400, "has no tokens"),
    (json.dumps({"sentence": " ".join(["w"] * 100_000)}).encode(), "application/json", 400,
     "100,000 tokens, more than --max-tokens 1,000"),
    (json.dumps({"sentences": ["a"] * 65}).encode(), "application/json", 400,
     "more than --max-items 64"),
    (b"x" * (2 * 1024 * 1024), "application/json", 413, "over the limit of 1,048,576 bytes"),
    (b"sentence=John", "application/x-www-form-urlencoded", 400, "send application/json"),
]
IMAGE_BAD = [
    ({"image": b64(b"hello, not an image")}, 400, "not a readable image"),
    ({"image": "%%% not base64 %%%"}, 400, "not valid base64"),
    ({"image": b64(png((8000, 8000), "1"))}, 400, "image is too large (8000x8000"),
    ({"images": []}, 400, "no image in the request"),
    ({"images": "abc"}, 400, "must be a list"),
    ({"image": 7}, 400, "a base64 string was expected"),
    ({"picture": "abc"}, 400, "one field, 'image' or 'images'"),
]


def test_bad_requests_get_a_4xx_with_one_line_of_json_and_the_server_goes_on(shipped):
    ner = shipped("ner")
    with Server(ner.model_dir, "--max-body-mb", "1") as server:
        for body, kind, status, words in NER_BAD:
            got, answer = server.request("predict", body, kind)
            assert (got, list(answer)) == (status, ["error"]), (body[:40], answer)
            assert words in answer["error"] and "\n" not in answer["error"], answer
        assert server.request("nowhere")[0] == 404
        assert server.request("predict")[0] == 405  # a GET
        assert server.post({"sentence": "John lives here ."})[0] == 200
        code, stderr = server.stop()
    assert code == 0 and "Traceback" not in stderr

    images = shipped("images")
    with Server(images.model_dir) as server:
        for payload, status, words in IMAGE_BAD:
            got, answer = server.post(payload)
            assert got == status and words in answer["error"], answer
        body, kind = multipart([("notes.txt", b"plain text")])
        got, answer = server.request("predict", body, kind)
        assert got == 400 and "upload 0" not in answer["error"] and "notes.txt" in \
            answer["error"]
        empty_form = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n"
        got, answer = server.request("predict", empty_form, "multipart/form-data; boundary=b")
        assert got == 400 and "without a file" in answer["error"]
        assert server.post({"image": b64(png((64, 64)))})[0] == 200
        code, stderr = server.stop()
    assert code == 0 and "Traceback" not in stderr


def test_a_model_that_cannot_load_or_a_taken_port_is_one_line_and_exit_2(shipped, tmp_path):
    missing = cli("serve", "--model-dir", tmp_path / "nothing", check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "best.pt").write_bytes(b"not a checkpoint")
    result = cli("serve", "--model-dir", broken, check=False)
    assert result.returncode == 2 and "best.pt" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    bad = cli("serve", "--model-dir", broken, "--max-batch", "0", check=False)
    assert bad.returncode == 2 and "--max-batch 0: must be between 1 and 4096" in bad.stderr
    model = shipped("ner")
    with Server(model.model_dir) as server:
        port = server.url.rstrip("/").rsplit(":", 1)[1]
        taken = cli("serve", "--model-dir", model.model_dir, "--port", port, check=False)
    assert taken.returncode == 2 and "the port is in use" in taken.stderr
    assert taken.stderr.count("\n") == 1


def test_the_page_is_served_whole_with_nothing_from_another_host(shipped):
    with Server(shipped("ner").model_dir) as server:
        html = __import__("urllib.request").request.urlopen(server.url).read().decode()
        status, info = server.request("info")
    assert "<script>" in html and "fetch(\"predict\"" in html
    assert "http://" not in html and "https://" not in html and "src=\"//" not in html
    assert status == 200 and info["kind"] == "text" and info["labels"][0] == "O"
    assert info["limits"]["max_tokens"] == 1000


def test_the_serving_page_shows_requests_the_server_takes_and_its_real_flags(shipped):
    """docs/serving.md: each JSON body of its curl lines gets a 200, and its flag table
    lists exactly serve's flags with their defaults."""
    import re
    from pathlib import Path

    from torchstarter.cli.main import build_parser

    page = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
    bodies = [json.loads(b) for b in re.findall(r"-d '(\{.*?\})'", page)]
    assert len(bodies) >= 2
    with Server(shipped("ner").model_dir) as server:
        for body in bodies:
            status, rows = server.post(body)
            assert status == 200 and rows, (body, rows)
    table = dict(re.findall(r"^\| `(--[a-z-]+)` \| `([^`]*)` \|", page, re.MULTILINE))
    serve = next(a for a in build_parser()._subparsers._group_actions[0].choices.items()
                 if a[0] == "serve")[1]
    flags = {a.option_strings[0]: a.default for a in serve._actions
             if a.option_strings and a.option_strings[0] not in ("-h", "--model-dir")}
    assert set(table) == set(flags)
    for name, default in flags.items():
        assert table[name] == (f"{default:g}" if isinstance(default, float) else
                               str(default)), name


# The rows of docs/errors.md these tests prove (test_bad_input checks the table).
ROWS = {
    "serve-port-in-use": ("serve", "the port is in use; pick another --port", [
        test_a_model_that_cannot_load_or_a_taken_port_is_one_line_and_exit_2]),
}


# A DDS header whose pixel format Pillow cannot read: it raises NotImplementedError.
DAMAGED_DDS = bytes.fromhex(
    "444453207c0000000f10000018000000140000003c00000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000200000004000000000000000"
    "180000000000ff0000ff0000ff000000000000000010000000000000000000000000000000000000"
    "c1815eeaced820a20e81d8") + bytes(64)


def raw_request(url: str, head: str, body: bytes = b"") -> bytes:
    """What the server answers a hand-written HTTP request (before any body is sent,
    for an Expect: 100-continue)."""
    import socket

    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return conn.recv(4096)


def test_hostile_requests_from_a_review_are_4xx_and_nothing_reaches_the_model(shipped):
    images = shipped("images")
    with Server(images.model_dir, "--max-pixels", "1000000") as server:
        bad = [({"image": "data:image/png"}, "not valid base64"),
               ({"image": b64(DAMAGED_DDS)}, "not a readable image (NotImplementedError)"),
               ({"images": [b64(png((800, 800))), b64(png((800, 800)))]},
                "the limit is 360,000"),  # the second spends what the first left
               ]
        for payload, words in bad:
            status, answer = server.post(payload)
            assert status == 400 and words in answer["error"], answer
        for kind in ("multipart/form-data", "multipart/form-data; boundary=x"):
            status, answer = server.request("predict", b"--y\r\nno boundary here", kind)
            assert status == 400 and "malformed request body" in answer["error"], answer
        assert server.request("predict", '{"image": "x"}'.encode("utf-16"))[1]["error"] \
            .startswith("the body is not UTF-8")
        huge = raw_request(server.url, f"POST /predict HTTP/1.1\nHost: 127.0.0.1\n"
                           f"Content-Type: application/json\nContent-Length: {10**12}\n"
                           f"Expect: 100-continue\n")
        assert huge.startswith(b"HTTP/1.1 413") and b"over the limit" in huge
        assert server.request("health")[1]["batching"]["inputs"] == 0
        code, stderr = server.stop()
    assert code == 0 and "Traceback" not in stderr


def test_tokens_predict_could_not_make_are_refused(shipped):
    with Server(shipped("ner").model_dir) as server:
        for tokens in (["a b"], ["\u00a0x"], ["a\x00b"], [""], ["\ud800"]):
            status, answer = server.post({"sentences": [tokens]})
            assert status == 400 and "sentence 0" in answer["error"], (tokens, answer)
        status, answer = server.post({"sentence": "a \x00 b"})
        assert status == 400 and "NUL" in answer["error"]


def test_a_foreign_host_or_origin_is_refused_on_loopback(shipped):
    with Server(shipped("ner").model_dir) as server:
        body = b'{"sentence": "John ."}'
        for head in ("Host: evil.example", "Host: 127.0.0.1\nOrigin: http://evil.example"):
            answer = raw_request(server.url, f"POST /predict HTTP/1.1\n{head}\nContent-Type: "
                                 f"application/json\nContent-Length: {len(body)}\n", body)
            assert answer.startswith(b"HTTP/1.1 403") and b'{"error": ' in answer, answer
        port = server.url.rstrip("/").rsplit(":", 1)[1]
        fine = raw_request(server.url, f"POST /predict HTTP/1.1\nHost: localhost:{port}\n"
                           f"Origin: http://localhost:{port}\nContent-Type: application/json"
                           f"\nContent-Length: {len(body)}\n", body)
        assert fine.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("flags,says", [
    (["--max-wait-ms", "inf"], "--max-wait-ms inf: must be between 0 and 10000"),
    (["--max-body-mb", "inf"], "--max-body-mb inf: must be between"),
    (["--max-batch", "nan"], "invalid int value"),
    (["--host", ""], "--host '': give an address"),
    (["--max-waiting", "10"], "--max-waiting 10: must be at least --max-items 64"),
])
def test_serve_flags_that_would_stall_or_crash_it_are_one_line_and_exit_2(flags, says):
    result = cli("serve", "--model-dir", "nowhere", *flags, check=False)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_the_batcher_drops_requests_whose_client_left_and_bounds_its_queue():
    import asyncio

    from torchstarter.serve.batcher import Batcher, Busy

    seen: list[list[str]] = []

    def predict(inputs: list[str]) -> list[dict]:
        seen.append(list(inputs))
        return [{"input": i} for i in inputs]

    async def scenario() -> None:
        batcher = Batcher(predict, max_batch=8, max_wait=0.2, max_waiting=4)
        batcher.arriving = 1  # another request is being read: the batch waits for it
        batcher.start()
        kept = asyncio.ensure_future(batcher.submit(["a"]))
        gone = asyncio.ensure_future(batcher.submit(["b", "c"]))
        await asyncio.sleep(0.01)
        gone.cancel()  # what the server does when that client hangs up
        with pytest.raises(Busy):
            await batcher.submit(["d", "e"])  # 3 waiting + 2 > 4
        assert await kept == [{"input": "a"}]
        assert batcher.state_dict()["waiting"] == 0
        await batcher.close()

    asyncio.run(scenario())
    assert seen == [["a"]]

    async def alone() -> float:  # nothing else on its way: the batch leaves at once
        batcher = Batcher(predict, max_batch=8, max_wait=5.0)
        batcher.start()
        started = time.monotonic()
        await batcher.submit(["x"])
        await batcher.close()
        return time.monotonic() - started

    assert asyncio.run(alone()) < 2.5
