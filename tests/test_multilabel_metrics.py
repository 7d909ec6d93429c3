"""Multi-label scores against a hand-worked example, the threshold choice on validation data, the loss,
per-label positive weights and the ensemble's average of sigmoid probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from rnnclf.inference.scoring import loss_of, report
from rnnclf.models.addons.ensemble import average
from rnnclf.reports.multilabel_metrics import choose_thresholds, multilabel_report

# Four documents, labels a, b, c:  gold          predicted
#   d1                              {a, b}        {a}
#   d2                              {b}           {b, c}
#   d3                              {}            {}
#   d4                              {a, c}        {a, c}
GOLD = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]], dtype=torch.uint8)
PREDICTED = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1]], dtype=torch.bool)


def test_every_score_matches_the_hand_worked_example() -> None:
    scores = multilabel_report(GOLD, PREDICTED, ["a", "b", "c"])
    # Per label (tp, fp, fn, tn): a (2, 0, 0, 2); b (1, 0, 1, 2); c (1, 1, 0, 2).
    assert scores["per_class"]["a"] == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "tp": 2, "fp": 0, "fn": 0, "tn": 2,
    }  # fmt: skip
    b, c = scores["per_class"]["b"], scores["per_class"]["c"]
    assert (b["precision"], b["recall"], b["support"]) == (1.0, 0.5, 2)
    assert (c["precision"], c["recall"], c["support"]) == (0.5, 1.0, 1)
    assert b["f1"] == pytest.approx(2 / 3) and c["f1"] == pytest.approx(2 / 3)
    # Pooled: tp 4, fp 1, fn 1.
    assert scores["micro_precision"] == pytest.approx(4 / 5)
    assert scores["micro_recall"] == pytest.approx(4 / 5)
    assert scores["micro_f1"] == pytest.approx(8 / 10)
    assert scores["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # Per document F1: d1 2*1/3, d2 2*1/3, d3 1 (nothing to find, nothing claimed), d4 2*2/4.
    assert scores["samples_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1) / 4)
    assert scores["subset_accuracy"] == scores["accuracy"] == 0.5  # d3 and d4 exactly right
    assert scores["hamming_loss"] == pytest.approx(2 / 12)  # 2 wrong decisions of 4 x 3
    assert scores["label_cardinality"] == pytest.approx(5 / 4)
    assert scores["predicted_cardinality"] == pytest.approx(5 / 4)
    assert scores["n"] == 4 and scores["multi_label"] is True


def test_macro_f1_leaves_out_labels_absent_from_gold_and_predictions() -> None:
    gold = torch.tensor([[1, 0], [0, 0]])
    scores = multilabel_report(gold, gold.bool(), ["a", "never"])
    assert scores["macro_f1"] == 1.0 and scores["per_class"]["never"]["f1"] == 0.0


# Validation probabilities and gold for two labels. Sorted, all eight decisions:
#   0.9 (+) 0.6 (+) 0.4 (+) 0.35 (+) | 0.3 (-) 0.2 (-) 0.15 (-) 0.1 (-)
# At 0.35 every positive and no negative is chosen: micro-F1 1. At 0.40: tp 3, fn 1 -> 6/7;
# at 0.30: fp 1 -> 8/9.
PROBABILITIES = torch.tensor([[0.9, 0.2], [0.35, 0.6], [0.3, 0.1], [0.15, 0.4]])
VALID_GOLD = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]])


def test_the_global_threshold_maximises_micro_f1_on_validation_data() -> None:
    assert choose_thresholds(PROBABILITIES, VALID_GOLD, "global") == [0.35, 0.35]
    at_040 = report(torch.logit(PROBABILITIES), VALID_GOLD, ["a", "b"], thresholds=[0.4, 0.4])
    at_035 = report(torch.logit(PROBABILITIES), VALID_GOLD, ["a", "b"], thresholds="global")
    assert at_040["micro_f1"] == pytest.approx(6 / 7)
    assert at_035["micro_f1"] == pytest.approx(1.0) and at_035["thresholds"] == [0.35, 0.35]


def test_per_label_thresholds_and_ties_go_to_the_value_nearest_one_half() -> None:
    # Label a: gold 1 1 0 0 at 0.9 0.35 0.3 0.15 -> only (0.30, 0.35] separates: 0.35.
    # Label b: gold 0 1 0 1 at 0.2 0.6 0.1 0.4 -> every value in (0.2, 0.4] separates; nearest 0.5: 0.4.
    assert choose_thresholds(PROBABILITIES, VALID_GOLD, "per_label") == [0.35, 0.4]
    # A tie across (0.2, 0.8] for one global value: 0.5 itself.
    assert choose_thresholds(torch.tensor([[0.8], [0.2]]), torch.tensor([[1], [0]]), "global") == [0.5]
    assert choose_thresholds(PROBABILITIES, VALID_GOLD, 0.7) == [0.7, 0.7]


def test_loss_is_binary_cross_entropy_per_label_with_positive_weights() -> None:
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    gold = torch.tensor([[1, 0], [0, 1]], dtype=torch.uint8)
    weights = torch.tensor([3.0, 1.0])

    def bce(z: float, y: int, w: float) -> float:  # -(w y log s(z) + (1 - y) log(1 - s(z)))
        s = 1 / (1 + math.exp(-z))
        return -(w * y * math.log(s) + (1 - y) * math.log(1 - s))

    first = (bce(0.0, 1, 3.0) + bce(2.0, 0, 1.0)) / 2
    second = (bce(-1.0, 0, 3.0) + bce(1.0, 1, 1.0)) / 2
    assert loss_of(logits, gold, weights).item() == pytest.approx((first + second) / 2)
    assert loss_of(logits, gold, weights, reduction="sum").item() == pytest.approx(first + second)


def test_class_weights_auto_are_capped_negative_to_positive_ratios(tmp_path: object) -> None:
    from types import SimpleNamespace

    from rnnclf.batching import Encoded
    from rnnclf.config import validate
    from rnnclf.training.optimization import MAX_POSITIVE_WEIGHT, class_weights

    targets = torch.zeros(100, 3, dtype=torch.uint8)
    targets[:50, 0] = 1  # 50 of 100: 50 / 50 = 1
    targets[:10, 1] = 1  # 10 of 100: 90 / 10 = 9
    targets[:1, 2] = 1  # 1 of 100: 99, capped
    train = Encoded.from_lengths(
        torch.zeros(100, dtype=torch.int32), torch.ones(100, dtype=torch.int64), targets
    )
    prepared = SimpleNamespace(labels=["a", "b", "c"], train=train)
    config = validate({"data": {"multi_label": True}, "train": {"class_weights": "auto"}})
    assert class_weights(config, prepared).tolist() == [1.0, 9.0, MAX_POSITIVE_WEIGHT]


def test_an_ensemble_averages_sigmoid_probabilities_for_multi_label() -> None:
    logits = torch.tensor([[[2.0, -1.0], [0.0, 3.0]]])  # (B=1, K=2, L=2)
    expected = torch.sigmoid(logits).mean(dim=1)  # (1, 2)
    assert torch.allclose(torch.sigmoid(average(logits, multi_label=True)), expected, atol=1e-6)
