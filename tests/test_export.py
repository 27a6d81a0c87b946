"""`torchstarter export`: artifacts that match the eager model, run without torchstarter,
and are never left half-written or unchecked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch
from test_cli_end_to_end import cli

from torchstarter.errors import UserError
from torchstarter.export import artifact
from torchstarter.export.formats import FORMATS, Format

pytest.importorskip("onnxruntime", reason="the export tests need onnx, onnxscript and "
                                          "onnxruntime (pip install -e '.[dev]')")

# Python with torchstarter made unimportable: what a user of the artifact has.
WITHOUT_TORCHSTARTER = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torchstarter":
            raise ImportError("torchstarter is not installed here")
sys.meta_path.insert(0, Refuse())
"""


@pytest.mark.parametrize("task,fmt", [("signs", "onnx"), ("images", "torch-export"),
                                      ("ner", "onnx"), ("ner", "torch-export")])
def test_the_artifact_matches_the_eager_model_on_val_and_says_so_in_its_json(shipped, task,
                                                                              fmt):
    model = shipped(task)
    out = cli("export", "--model-dir", model.model_dir, "--data-dir", model.data_dir,
              "--format", fmt)
    suffix = FORMATS[fmt].suffix
    path = model.model_dir / "export" / f"best{suffix}"
    meta = json.loads((model.model_dir / "export" / f"best{suffix}.json").read_text())
    assert f"wrote {path}" in out.stdout and "identical predictions 100.00%" in out.stdout
    parity = meta["parity"]
    assert parity["split"] == "val" and parity["max_abs_diff"] <= 1e-4
    assert parity["identical_predictions"] == 1.0 and parity["examples"] > 0
    assert meta["bytes"] == path.stat().st_size > 0 and meta["format"] == fmt
    assert meta["dynamic"]["lengths" if task == "ner" else "images"]["0"] == "batch"
    if task == "ner":
        assert meta["dynamic"]["words"] == {"0": "batch", "1": "length"}
        assert meta["tags"][0] == "O" and len(meta["words"]) > 100 and meta["chars"]
        assert "Viterbi decoding runs inside the graph" in meta["outputs"]["tags"]["meaning"]
    else:
        assert meta["inputs"]["images"]["dtype"] == "uint8"
        assert meta["preprocessing"]["resize"]["size"] == [64, 64]


def test_an_exported_tagger_runs_from_its_json_alone_at_any_batch_and_length(shipped,
                                                                              tmp_path):
    """A caller with onnxruntime and the JSON, no torchstarter: encodes sentences by the
    JSON's rules, gets the tags `predict` gives, for batches of 1 and 3 and lengths 1-9."""
    model = shipped("ner")
    cli("export", "--model-dir", model.model_dir, "--data-dir", model.data_dir,
        "--output", tmp_path / "tagger.onnx")
    sentences = ["John", "Mary went to Berlin .", "The UN said 25 people died in IRAQ ."]
    expected = json.loads(cli("predict", "--model-dir", model.model_dir, "--json",
                              *sentences).stdout)
    script = WITHOUT_TORCHSTARTER + textwrap.dedent("""
        import json, numpy as np, onnxruntime
        meta = json.load(open(sys.argv[1] + ".json"))
        words = {w: i for i, w in enumerate(meta["words"]) if w != "<pad>"}
        chars = {c: i + 2 for i, c in enumerate(meta["chars"])}
        width = meta["inputs"]["chars"]["shape"][2]

        def case(t):
            cased = [c for c in t if c.islower() or c.isupper()]
            if any(c.isdigit() for c in t): return 4
            if not cased: return 5
            if all(c.islower() for c in cased): return 1
            if all(c.isupper() for c in cased): return 2 if len(cased) > 1 else 3
            if cased[0].isupper() and all(c.islower() for c in cased[1:]): return 3
            return 5

        def encode(batch):
            n, length = len(batch), max(map(len, batch))
            w = np.zeros((n, length), np.int64); c = np.zeros((n, length, width), np.int64)
            k = np.zeros((n, length), np.int64)
            for i, s in enumerate(batch):
                for j, t in enumerate(s):
                    w[i, j] = words.get(t, 1)
                    k[i, j] = case(t)
                    for m, ch in enumerate(t[:width]):
                        c[i, j, m] = chars.get(ch, 1)
            return {"words": w, "chars": c, "cases": k,
                    "lengths": np.array([len(s) for s in batch], np.int64)}

        session = onnxruntime.InferenceSession(sys.argv[1])
        batch = [line.split() for line in sys.argv[2:]]
        out = []
        for group in ([batch[0]], batch):  # batch of one, then all three
            emissions, tags = session.run(None, encode(group))
            out.append([[meta["tags"][t] for t in row[:len(s)]]
                        for row, s in zip(tags, group)])
        print(json.dumps(out))
    """)
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "tagger.onnx"),
                          *sentences], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    alone, together = json.loads(run.stdout)
    assert alone == [expected[0]["tags"]]
    assert together == [row["tags"] for row in expected]


def test_onnx_dimensions_carry_the_json_names_and_a_killed_exports_temps_go(shipped,
                                                                           tmp_path):
    import onnx

    model = shipped("ner")
    stale = tmp_path / ".t.onnx.0123abcd.tmp.onnx"  # what a kill -9 mid-export leaves
    stale.write_bytes(b"half")
    artifact.export_model(model.model_dir, model.data_dir, output=tmp_path / "t.onnx")
    graph = onnx.load(str(tmp_path / "t.onnx")).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.output]}
    assert dims["words"] == ["batch", "length"] and dims["lengths"] == ["batch"]
    assert dims["chars"] == ["batch", "length", 20] and dims["tags"] == ["batch", "length"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.onnx", "t.onnx.json"]


def test_an_exported_classifier_runs_from_its_json_alone(shipped, tmp_path):
    model = shipped("images")
    cli("export", "--model-dir", model.model_dir, "--data-dir", model.data_dir,
        "--format", "torch-export", "--output", tmp_path / "digits.pt2")
    files = sorted((model.raw_dir / "test").rglob("*.png"))[::7][:5]
    expected = json.loads(cli("predict", "--model-dir", model.model_dir, "--json",
                              *files).stdout)
    script = WITHOUT_TORCHSTARTER + textwrap.dedent("""
        import json, numpy as np, torch
        from PIL import Image
        meta = json.load(open(sys.argv[1] + ".json"))
        size = meta["preprocessing"]["resize"]["size"]
        program = torch.export.load(sys.argv[1]).module()
        images = [np.asarray(Image.open(f).convert("RGB").resize(size, Image.LANCZOS))
                  for f in sys.argv[2:]]
        x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())
        logits, labels = program(x)
        print(json.dumps([meta["classes"][i] for i in labels.tolist()]))
    """)
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "digits.pt2"),
                          *map(str, files)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [row["label"] for row in expected]


def test_a_failed_parity_check_keeps_nothing_it_wrote_and_the_old_export(shipped,
                                                                         monkeypatch):
    model = shipped("signs")
    out, _ = artifact.export_model(model.model_dir, model.data_dir, fmt="onnx",
                                   output=model.model_dir / "kept" / "m.onnx")
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    real = FORMATS["onnx"]

    def off_by_a_little(path):
        run = real.load(path)
        return lambda inputs: tuple(t + 0.01 if t.is_floating_point() else t
                                    for t in run(inputs))

    monkeypatch.setitem(FORMATS, "onnx", Format(real.suffix, real.write, off_by_a_little))
    with pytest.raises(artifact.CheckFailed, match=r"m.onnx: not written: .* by up to 0.01"):
        artifact.export_model(model.model_dir, model.data_dir, fmt="onnx", output=out,
                              overwrite=True)
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # no temp left
    fine, meta = artifact.export_model(model.model_dir, model.data_dir, fmt="onnx",
                                       output=out, overwrite=True, tolerance=0.02)
    assert meta["parity"]["tolerance"] == 0.02 and meta["parity"]["max_abs_diff"] > 0.009


def test_export_mistakes_are_one_line_and_touch_nothing(shipped, tmp_path):
    model = shipped("signs")
    taken = tmp_path / "taken.onnx"
    taken.write_text("mine")
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    cases = [
        (["--output", taken], "taken.onnx: exists; pass --overwrite"),
        (["--tolerance", "-1"], "--tolerance -1.0: must be a number >= 0"),
        (["--format", "tflite"], "invalid choice: 'tflite'"),
        (["--split", "nope", "--output", tmp_path / "new.onnx"], "nope_signs: folder not found"),
        (["--split", "../val", "--output", tmp_path / "new.onnx"], "not a path"),
        (["--output", "."], "--output '.': give a file name, such as model.onnx"),
        (["--output", tmp_path / "x.json"], "--format onnx files end in .onnx"),
        (["--output", taken / "x.onnx"], "a part of this path is a file, not a folder"),
        (["--output", fifo, "--overwrite"], "exists and is not a regular file"),
        (["--tolerance", "inf", "--output", tmp_path / "new.onnx"], "must be a number >= 0"),
    ]
    for extra, message in cases:
        result = cli("export", "--model-dir", model.model_dir, "--data-dir", model.data_dir,
                     *extra, check=False)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert taken.read_text() == "mine" and not (tmp_path / "new.onnx").exists()
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    missing = cli("export", "--model-dir", tmp_path / "none", "--data-dir", model.data_dir,
                  check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_two_exports_to_one_file_take_turns_and_the_second_is_told_it_exists(shipped,
                                                                            tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    model = shipped("signs")
    out = tmp_path / "same.pt2"

    def export(_: int) -> str:
        try:
            artifact.export_model(model.model_dir, model.data_dir, fmt="torch-export",
                                  output=out)
            return "written"
        except UserError as exc:
            return str(exc)

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(export, range(2)))
    assert results[1] == "written" and "same.pt2: exists; pass --overwrite" in results[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.pt2", "same.pt2.json"]


def test_a_task_without_export_spec_is_told_which_hook_to_write():
    from torchstarter.engine.task import Task

    with pytest.raises(UserError, match="has no export_spec"):
        Task().export_spec(torch.nn.Linear(1, 1), None, None)


# The rows of docs/errors.md these tests prove (test_bad_input checks the table).
ROWS = {
    "export-exists": ("export", "exists; pass --overwrite to replace it",
                      [test_export_mistakes_are_one_line_and_touch_nothing]),
    "export-parity-failed": ("export", "not written: the onnx artifact differs from the "
                             "eager model", [
                                 test_a_failed_parity_check_keeps_nothing_it_wrote_and_the_old_export]),
}
