"""Tests for `model.linear_ngrams`: the exact-n-gram, naive-Bayes-scaled logistic regression (rnnclf.linear)
and its blend with the RNN (model.Blend)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnclf import checkpoint
from rnnclf.batching import Encoded
from rnnclf.cli import app
from rnnclf.config import ModelConfig
from rnnclf.export import padded_batch
from rnnclf.linear import MIN_DOCUMENTS, NONE, NgramLogistic, document_ngrams, fit, sorted_position
from rnnclf.model import Blend, Classifier, build_model, members_of
from rnnclf.ngrams import log_count_ratio
from rnnclf.predict import Predictor


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


def test_blend_averages_probabilities_and_trains_only_the_rnn() -> None:
    config = ModelConfig.model_validate(
        {"embedding_dim": 8, "hidden_dim": 6, "ngram_buckets": 53, "linear_ngrams": 2, "linear_share": 0.3}
    )
    torch.manual_seed(0)
    model = build_model(30, 3, config).eval()
    assert isinstance(model, Blend) and isinstance(model.rnn, Classifier)
    assert members_of(model) == [model.rnn]
    texts, labels = random_corpus(2)
    fit(model.linear, data_set(texts, labels))
    ids, lengths = padded_batch(texts[:7])
    with torch.no_grad():
        scores = model(ids, lengths)
        rnn = torch.softmax(model.rnn(ids, lengths), dim=-1)
        linear = torch.softmax(model.linear(ids, lengths), dim=-1)
        torch.testing.assert_close(scores.exp(), 0.7 * rnn + 0.3 * linear, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            model(ids, lengths, per_member=True), model.rnn(ids, lengths, per_member=True)
        )
    # The linear model holds no parameters: the optimizer only ever sees the RNN's.
    assert sum(p.numel() for p in model.linear.parameters()) == 0
    # share 1: the linear model alone.
    model.share = 1.0
    with torch.no_grad():
        torch.testing.assert_close(model(ids, lengths).exp(), linear, atol=1e-6, rtol=0)


def test_fitted_model_round_trips_through_a_state_dict() -> None:
    texts, labels = random_corpus(3)
    model = NgramLogistic(3, 3)
    fit(model, data_set(texts, labels))
    fresh = NgramLogistic(3, 3)  # empty buffers: sizes come from the saved state
    fresh.load_state_dict(model.state_dict())
    ids, lengths = padded_batch(texts)
    torch.testing.assert_close(fresh(ids, lengths), model(ids, lengths), atol=0, rtol=0)


def test_cli_trains_a_blend_saves_it_and_predicts(tiny_config: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", str(tiny_config), "--run-dir", str(run_dir), "--set", "model.linear_ngrams=2"]
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "linear model:" in result.output and "n-grams (1-2" in result.output
    state = checkpoint.load(run_dir / "best.pt")
    assert state["model"]["linear.keys"].numel() > 0
    predictor = Predictor(state, source="best.pt")
    assert isinstance(predictor.model, Blend)
    [prediction] = predictor.predict(["the laptop software chip"])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_export_of_a_blend(tiny_config: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(
        app,
        ["train", str(tiny_config), "--quiet", "--run-dir", str(run_dir), "--set", "model.linear_ngrams=2"],
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
