"""What `evaluate` says about where a model is wrong (experiment/analysis.py): the
confusion matrix and the highest-loss images of a real SIGNS run, agreeing with its
predictions file, and NER entity outcomes sorted into kinds that account for every gold
and every predicted entity."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from torchstarter.experiment.analysis import KINDS, entity_outcomes
from torchstarter.experiment.evaluation import evaluate
from torchstarter.experiment.training import train
from torchstarter.tasks.ner.entities import spans


def test_signs_confusion_and_top_losses_agree_with_the_predictions(make_experiment,
                                                                    sample_data):
    model_dir = make_experiment(num_epochs=1)
    train(model_dir, sample_data, console=False)
    metrics, _ = evaluate(model_dir, sample_data)
    analysis = metrics["analysis"]
    lines = (model_dir / "predictions_test_best.jsonl").read_text().splitlines()[1:]
    rows = [json.loads(line) for line in lines]
    table = analysis["confusion"]
    index = {name: i for i, name in enumerate(table["labels"])}
    for row in rows:
        assert row["true"] in index and row["predicted"] in index
    counts = table["counts"]
    assert sum(map(sum, counts)) == len(rows)
    assert sum(counts[i][i] for i in range(len(counts))) == sum(r["correct"] for r in rows)
    for name, i in index.items():
        support = sum(r["true"] == name for r in rows)
        assert sum(counts[i]) == table["per_class"][name]["support"] == support
        if support:
            assert abs(sum(table["normalised"][i]) - 1) < 1e-5
    highest = sorted(rows, key=lambda r: -r["loss"])[:len(analysis["top_losses"])]
    assert analysis["top_losses"] == [r["id"] for r in highest]
    for name in ("confusion_test_best.png", "top_losses_test_best.png"):
        with Image.open(model_dir / name) as img:
            assert img.format == "PNG" and min(img.size) > 100
    text = (model_dir / analysis["analysis_file"]).read_text()
    assert "](confusion_test_best.png)" in text and "](top_losses_test_best.png)" in text


def row(true, pred):
    return {"true": true, "predicted": pred}


def test_each_kind_of_entity_error_is_named():
    sentence = ["B-per", "I-per", "O", "B-geo", "O", "B-org", "O", "O", "B-tim", "O"]
    predicted = ["B-per", "I-per", "O", "B-org", "O", "O", "O", "B-gpe", "B-tim", "I-tim"]
    out = entity_outcomes([row(sentence, predicted)])
    assert out["error_kinds"] == {"correct": 1, "wrong type": 1, "wrong boundary": 1,
                                  "wrong type and boundary": 0, "missed": 1, "spurious": 1}
    assert out["type_confusion"] == [{"true": "geo", "predicted": "org", "count": 1}]
    overlap = entity_outcomes([row(["B-per", "I-per", "O"], ["O", "B-geo", "I-geo"])])
    assert overlap["error_kinds"]["wrong type and boundary"] == 1


TAGS = st.sampled_from(["O", "B-per", "I-per", "B-geo", "I-geo"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TAGS, TAGS), min_size=1, max_size=30))
def test_every_gold_and_every_predicted_entity_is_counted_once(pairs):
    gold, pred = ([p[k] for p in pairs] for k in (0, 1))
    kinds = entity_outcomes([row(gold, pred)])["error_kinds"]
    assert set(kinds) == set(KINDS)
    n_gold, n_pred = len(spans(gold)), len(spans(pred))
    assert sum(kinds[k] for k in KINDS if k != "spurious") == n_gold
    assert kinds["correct"] + kinds["spurious"] <= n_pred
    if n_gold == 0:
        assert kinds["spurious"] == n_pred


def test_a_prediction_overlapping_two_gold_entities_explains_only_one():
    out = entity_outcomes([row(["B-per", "B-geo", "O"], ["B-per", "I-per", "O"])])
    assert out["error_kinds"] == {"correct": 0, "wrong type": 0, "wrong boundary": 1,
                                  "wrong type and boundary": 0, "missed": 1, "spurious": 0}
    again = [entity_outcomes([row(["B-per", "B-geo", "O"], ["B-per", "I-per", "O"])])
             for _ in range(3)]
    assert all(o == out for o in again)


def test_the_top_loss_grid_takes_float_and_grayscale_images(tmp_path):
    import numpy as np

    from torchstarter.experiment.analysis import top_losses_png

    rows = [{"id": f"{i}.png", "true": "a", "predicted": "b", "loss": float(i),
             "probabilities": {"a": 0.4, "b": 0.6}} for i in range(5)]
    rng = np.random.default_rng(0)
    for images in (rng.random((5, 3, 8, 8)), rng.normal(size=(5, 1, 8, 8)) * 40):
        path = tmp_path / "grid.png"
        assert top_losses_png(rows, images, path) == [f"{i}.png" for i in (4, 3, 2, 1, 0)]
        with Image.open(path) as img:
            assert img.format == "PNG"
