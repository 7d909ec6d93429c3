"""Tests for the linear add-on (`linear.ngrams`): the exact-n-gram, naive-Bayes-scaled logistic regression
(rnnclf.models.addons.linear, fitted by rnnclf.models.addons.linear_fit), its blend with the recurrent
model, and the
blend's share chosen on validation data (rnnclf.training.outcome)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnclf.batching import Encoded
from rnnclf.cli.app import app
from rnnclf.config import Config, load
from rnnclf.inference.export import padded_batch
from rnnclf.inference.predict import Predictor
from rnnclf.inference.scoring import logits_for
from rnnclf.models.addons import Blend, build_model, members_of
from rnnclf.models.addons.linear import NONE, NgramLogistic, blend, document_ngrams, sorted_position
from rnnclf.models.addons.linear_fit import MIN_DOCUMENTS, fit, log_count_ratio
from rnnclf.models.classifier import Classifier
from rnnclf.prepare import prepare
from rnnclf.runs import checkpoint
from rnnclf.training.outcome import SHARES, choose_share


def test_document_ngrams_are_distinct_and_stay_inside_each_length() -> None:
    ids = torch.tensor([[5, 6, 5, 6, 0, 0], [7, 8, 9, 7, 8, 9]])
    lengths = torch.tensor([4, 6])
    keys = document_ngrams(ids, lengths, order=3)
    first = set(keys[0][keys[0] != NONE].tolist())
    # "5 6 5 6": unigrams {5, 6}, bigrams {5 6, 6 5}, trigrams {5 6 5, 6 5 6}; nothing with padding.
    assert len(first) == 6 and (keys[0] != NONE).sum() == 6
    assert {5, 6} <= first and 0 not in first
    # "7 8 9 7 8 9": 3 unigrams, bigrams {78, 89, 97}, trigrams {789, 897, 978}.
    assert (keys[1] != NONE).sum() == 9
    # The same n-gram gives the same key in another document and position.
    again = document_ngrams(torch.tensor([[6, 5, 6]]), torch.tensor([3]), order=3)
    repeated = set(again[0][again[0] != NONE].tolist())  # 5, 6, "6 5", "5 6", "6 5 6"
    assert len(repeated) == 5 and repeated <= first


def data_set(documents: list[list[int]], labels: list[int]) -> Encoded:
    lengths = torch.tensor([len(document) for document in documents])
    ids = torch.tensor([token for document in documents for token in document], dtype=torch.int32)
    return Encoded.from_lengths(ids, lengths, torch.tensor(labels))


def random_corpus(seed: int, documents: int = 60) -> tuple[list[list[int]], list[int]]:
    """Words 2..29; class c's documents use words 2 + 5c .. 6 + 5c more often, so n-grams tell."""
    generator = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for n in range(documents):
        label = n % 3
        length = int(torch.randint(3, 12, (1,), generator=generator))
        common = torch.randint(2, 30, (length,), generator=generator)
        own = torch.randint(2 + 5 * label, 7 + 5 * label, (length,), generator=generator)
        pick = torch.rand(length, generator=generator) < 0.5
        texts.append(torch.where(pick, own, common).tolist())
        labels.append(label)
    return texts, labels


def features_by_hand(texts: list[list[int]], order: int) -> dict[tuple[int, ...], set[int]]:
    """n-gram -> the documents that contain it, counted with plain Python."""
    found: dict[tuple[int, ...], set[int]] = {}
    for number, text in enumerate(texts):
        for n in range(1, order + 1):
            for start in range(len(text) - n + 1):
                found.setdefault(tuple(text[start : start + n]), set()).add(number)
    return found


def test_fit_reaches_the_regularised_optimum_over_the_right_features() -> None:
    texts, labels = random_corpus(0)
    data = data_set(texts, labels)
    model = NgramLogistic(order=2, num_classes=3)
    c = 0.5
    result = fit(model, data, c=c)
    # Features: exactly the n-grams in >= MIN_DOCUMENTS documents, counted independently here.
    by_hand = {gram: docs for gram, docs in features_by_hand(texts, 2).items() if len(docs) >= MIN_DOCUMENTS}
    assert result.features == len(by_hand) == model.keys.numel()
    # Rebuild the objective densely from the hand count, with the fitted weights: its gradient must
    # vanish (the L-BFGS solution is the optimum, not a few steps toward it).
    grams = sorted(by_hand)
    counts = torch.tensor([[sum(labels[d] == k for d in by_hand[g]) for k in range(3)] for g in grams])
    scale = log_count_ratio(counts, torch.tensor(labels), 3)  # (F,)
    x = torch.zeros(len(texts), len(grams))
    for column, gram in enumerate(grams):
        for document in by_hand[gram]:
            x[document, column] = scale[column]
    # The model stores |r| * w per feature in key order; recover w in the hand-made order.
    order_of = {}
    for gram in grams:
        key = gram[0] if len(gram) == 1 else gram[0] * 1_000_003 + gram[1]
        order_of[gram] = int(torch.searchsorted(model.keys, torch.tensor(key)))
        assert model.keys[order_of[gram]] == key
    # A feature with |r| = 0 (as common in every class) has no effect; its optimal weight is 0.
    w = torch.stack(
        [
            model.weight[order_of[g]] / scale[i] if scale[i] > 0 else torch.zeros(3)
            for i, g in enumerate(grams)
        ]
    )
    w.requires_grad_(True)
    b = model.bias.clone().requires_grad_(True)
    y = torch.tensor(labels)
    loss = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5 / (c * len(texts)) * w.square().sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-4 and b.grad.abs().max() < 1e-4
    # And the module scores documents as the dense model does.
    with torch.no_grad():
        torch.testing.assert_close(model(*padded_batch(texts)), x @ w + b, atol=1e-4, rtol=1e-4)
    assert result.train_accuracy > 0.9


def test_more_data_per_feature_means_less_penalty() -> None:
    # C scales the penalty down: a larger C lets the weights grow.
    texts, labels = random_corpus(1)
    small, large = NgramLogistic(2, 3), NgramLogistic(2, 3)
    fit(small, data_set(texts, labels), c=0.05)
    fit(large, data_set(texts, labels), c=5.0)
    assert large.weight.abs().sum() > 2 * small.weight.abs().sum()


def test_blend_mixes_probabilities_by_its_share_and_trains_only_the_recurrent_model() -> None:
    config = Config.model_validate({"model": {"embedding_dim": 8, "hidden_dim": 6}, "linear": {"ngrams": 2}})
    torch.manual_seed(0)
    model = build_model(30, 3, config).eval()
    assert isinstance(model, Blend) and isinstance(model.recurrent, Classifier)
    assert members_of(model) == [model.recurrent]
    texts, labels = random_corpus(2)
    fit(model.linear, data_set(texts, labels))
    ids, lengths = padded_batch(texts[:7])
    with torch.no_grad():
        recurrent = torch.softmax(model.recurrent(ids, lengths), dim=-1)
        linear = torch.softmax(model.linear(ids, lengths), dim=-1)
        # Until a share is chosen (after training, on validation data) the blend is the recurrent model.
        torch.testing.assert_close(model(ids, lengths).exp(), recurrent, atol=1e-6, rtol=0)
        model.share.fill_(0.3)
        torch.testing.assert_close(
            model(ids, lengths).exp(), 0.7 * recurrent + 0.3 * linear, atol=1e-6, rtol=0
        )
        model.share.fill_(1.0)
        torch.testing.assert_close(model(ids, lengths).exp(), linear, atol=1e-6, rtol=0)
    # The linear model holds no parameters: the optimizer only ever sees the recurrent model's.
    assert sum(p.numel() for p in model.linear.parameters()) == 0
    assert "share" in model.state_dict()  # the chosen share travels with the weights


def test_share_grid_includes_each_part_alone_and_ties_go_to_the_recurrent_model() -> None:
    assert SHARES[0] == 0.0 and SHARES[-1] == 1.0 and len(SHARES) == 11
    labels = ["a", "b"]
    gold = torch.tensor([0, 0, 1, 1])
    right = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 3.0], [0.0, 3.0]])  # (4, 2) every document right
    wrong = -right
    # The linear model alone is right, the recurrent model always wrong: only a large share gets all 4;
    # the best accuracy is first reached above 0.5 and loss decides nothing here (monitor: accuracy).
    share, grid = choose_share(wrong, right, gold, labels, "valid_accuracy")
    assert [row["share"] for row in grid] == list(SHARES)
    assert grid[0]["valid_accuracy"] == 0.0 and grid[-1]["valid_accuracy"] == 1.0
    assert share == min(row["share"] for row in grid if row["valid_accuracy"] == 1.0) > 0.5
    # The recurrent model alone is right: share 0 (every share up to 0.5 ties on accuracy).
    share, _ = choose_share(right, wrong, gold, labels, "valid_accuracy")
    assert share == 0.0
    # On loss, the lowest loss wins: the right model alone.
    share, _ = choose_share(wrong, right, gold, labels, "valid_loss")
    assert share == 1.0
    torch.testing.assert_close(blend(right, wrong, 0.0).exp(), torch.softmax(right, dim=-1))


def test_fitted_model_round_trips_through_a_state_dict() -> None:
    texts, labels = random_corpus(3)
    model = NgramLogistic(3, 3)
    fit(model, data_set(texts, labels))
    fresh = NgramLogistic(3, 3)  # empty buffers: sizes come from the saved state
    fresh.load_state_dict(model.state_dict())
    ids, lengths = padded_batch(texts)
    torch.testing.assert_close(fresh(ids, lengths), model(ids, lengths), atol=0, rtol=0)


KEEP_LAST = ["--set", "output.keep_last=true"]


def test_cli_trains_a_blend_chooses_its_share_on_validation_and_shows_each_part(
    tiny_config: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        # keep_last: last.pt must hold the chosen share too
        ["train", str(tiny_config), "--run-dir", str(run_dir), "--set", "linear.ngrams=2", *KEEP_LAST],
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "linear model (add-on):" in result.output and "n-grams (1-2" in result.output
    state = checkpoint.load(run_dir / "best.pt")
    assert state["model"]["linear.keys"].numel() > 0
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    chosen = metrics["blend"]["share"]
    assert metrics["blend"]["chosen_on"] == "valid" and len(metrics["blend"]["grid"]) == len(SHARES)
    assert float(state["model"]["share"]) == pytest.approx(chosen)  # the saved model uses the choice
    assert float(checkpoint.load(run_dir / "last.pt")["model"]["share"]) == pytest.approx(chosen)
    # The choice is the grid's best validation accuracy, recomputed here from each part's logits.
    predictor = Predictor(state, source="best.pt")
    assert isinstance(predictor.model, Blend)
    prepared = prepare(load(run_dir / "config.yaml"))
    cpu = torch.device("cpu")
    recurrent = logits_for(predictor.model.recurrent, prepared.valid, cpu)
    linear = logits_for(predictor.model.linear, prepared.valid, cpu)
    share, _ = choose_share(recurrent, linear, prepared.valid.labels, prepared.labels, "valid_accuracy")
    assert share == chosen
    # Each part's score is reported beside the blend's, on valid and test.
    parts = metrics["components"]
    assert set(parts) == {"recurrent", "linear"} and all(set(p) == {"valid", "test"} for p in parts.values())
    recurrent_accuracy = (recurrent.argmax(dim=-1) == prepared.valid.labels).float().mean().item()
    assert parts["recurrent"]["valid"]["accuracy"] == pytest.approx(recurrent_accuracy)
    assert f"recurrent model (lstm): valid accuracy {recurrent_accuracy:.4f}" in result.output
    assert f"blend: linear share {chosen:.1f}, chosen on validation" in result.output
    [prediction] = predictor.predict(["the laptop software chip"])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # `rnnclf info` shows each part beside the whole.
    info = CliRunner().invoke(app, ["info", "-m", str(run_dir), "--json"])
    assert info.exit_code == 0, info.output
    shown = json.loads(info.stdout)["metrics"]
    assert shown["components"] == parts and shown["blend"]["share"] == chosen
    text = " ".join(CliRunner().invoke(app, ["info", "-m", str(run_dir)]).stdout.split())
    assert f"recurrent valid accuracy {parts['recurrent']['valid']['accuracy']:.4f}" in text
    assert f"blend linear share {chosen:.1f}, chosen on validation" in text


def test_export_of_a_blend(tiny_config: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(
        app,
        ["train", str(tiny_config), "--quiet", "--run-dir", str(run_dir), "--set", "linear.ngrams=2"],
    )
    assert trained.exit_code == 0, trained.output
    # TorchScript carries the n-gram lookup, checked against the checkpoint's own probabilities.
    script = runner.invoke(
        app, ["export", "-m", str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]
    )
    assert script.exit_code == 0, script.output
    assert "checked: probabilities within" in script.output
    # ONNX has no searchsorted; the exported lookup is a fixed-step binary search, checked the same way.
    onnx = runner.invoke(
        app, ["export", "-m", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]
    )
    assert onnx.exit_code == 0, onnx.output
    assert "checked: probabilities within" in onnx.output
    assert (tmp_path / "m.onnx").exists() and (tmp_path / "m.onnx.json").exists()


@pytest.mark.parametrize("size", [1, 2, 3, 8, 100, 1000])
def test_sorted_position_matches_searchsorted(size: int) -> None:
    generator = torch.Generator().manual_seed(size)
    table = torch.randperm(4 * size, generator=generator)[:size].sort().values  # distinct, sorted
    # Queries below, between, on and above the table's keys, NONE included.
    queries = torch.randint(-2, 4 * size + 2, (5, 37), generator=generator)
    queries[0, : min(size, 37)] = table[:37]
    assert torch.equal(sorted_position(table, queries), torch.searchsorted(table, queries))


# --- the naive-Bayes log-count ratio, against numbers worked out by hand ------------------------------------


def test_log_count_ratios_match_the_smoothed_values_worked_by_hand() -> None:
    # Class 0: two documents, class 1: one. Smoothing: two pseudo-documents, 4/3 for class 0, 2/3 for 1.
    labels = torch.tensor([0, 0, 1])
    # Rows: an n-gram in both class-0 documents; one in the class-1 document only; one in one class-0
    # document; one never seen.
    counts = torch.tensor([[2, 0], [0, 1], [1, 0], [0, 0]])
    weights = log_count_ratio(counts, labels, 2)
    # P(g | 0) = (2 + 4/3) / 2, P(g | 1) = (0 + 2/3) / 1: ratio 2.5 (class 1's ratio is its inverse).
    assert math.isclose(weights[0], math.log(2.5), rel_tol=1e-6)
    assert math.isclose(weights[1], math.log(2.5), rel_tol=1e-6)
    assert math.isclose(weights[2], math.log(1.75), rel_tol=1e-6)  # (1 + 4/3) / 2 over (0 + 2/3) / 1
    assert weights[3] < 1e-6  # never seen: says nothing


def test_log_count_ratio_takes_the_strongest_class_and_a_missing_class_adds_nothing() -> None:
    # Four classes, class 3 has no training documents: its ratios must not be inf or nan.
    labels = torch.tensor([0, 0, 1, 2])
    counts = torch.tensor([[2, 0, 0, 0], [0, 0, 0, 0]])
    weights = log_count_ratio(counts, labels, 4)
    assert torch.isfinite(weights).all()
    # Class 0 (2 of 4 documents, 1 pseudo-document): (2 + 1) / 2 over (0 + 1) / 2 -> log 3. For class 1
    # (1 of 4, 0.5 pseudo): (0 + 0.5) / 1 over (2 + 1.5) / 3, smaller in size; the max wins.
    assert math.isclose(weights[0], max(math.log(3), abs(math.log(0.5 / (3.5 / 3)))), rel_tol=1e-6)
    assert weights[1] < 1e-6
