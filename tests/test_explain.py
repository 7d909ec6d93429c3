"""`rnnclf predict --explain`: occlusion scores, checked against their definition on a model trained in
the tests: score(token) = p(label | document) - p(label | document without that token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import KEYWORDS, make_documents
from typer.testing import CliRunner, Result

from rnnclf.cli.app import app
from rnnclf.cli.render import highlighted
from rnnclf.inference.explain import explain_one, summary
from rnnclf.inference.predict import Predictor


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def predictor(tiny_run: Path) -> Predictor:
    return Predictor.from_checkpoint(tiny_run / "best.pt")


def without(tokens: list[str], position: int) -> str:
    """The document with one token deleted (the tiny data's tokens are plain lowercase words, so joining
    them with spaces tokenizes back to exactly the remaining tokens)."""
    return " ".join(tokens[:position] + tokens[position + 1 :])


def test_scores_are_the_probability_lost_without_each_token(predictor: Predictor) -> None:
    for text, _ in make_documents(6, seed=4):
        explanation = explain_one(predictor, text)
        label = predictor.labels.index(explanation.label)
        full = predictor.probabilities([text])[0, label].item()
        assert explanation.probability == pytest.approx(full, abs=1e-6)
        assert explanation.scored == len(explanation.tokens) == len(text.split())
        for position, score in enumerate(explanation.scores):
            alone = predictor.probabilities([without(explanation.tokens, position)])[0, label].item()
            assert score == pytest.approx(full - alone, abs=1e-5), (text, position)


def test_removing_the_top_token_changes_the_probability_by_its_score(predictor: Predictor) -> None:
    hits = 0
    documents = make_documents(30, seed=2)
    for text, _ in documents:
        explanation = explain_one(predictor, text)
        top = explanation.top(1)[0]
        label = predictor.labels.index(explanation.label)
        before = predictor.probabilities([text])[0, label].item()
        after = predictor.probabilities([without(explanation.tokens, top["position"])])[0, label].item()
        assert before - after == pytest.approx(top["score"], abs=1e-5)
        assert top["score"] == max(s for s in explanation.scores if s is not None)
        hits += top["token"] in KEYWORDS[explanation.label]
    # The classes are signalled by keywords: the model learned them, so they should explain it.
    assert hits >= 0.9 * len(documents), hits


def test_long_documents_are_scored_on_their_first_tokens(predictor: Predictor) -> None:
    text = "the pizza was fine and the goal of the team was cheese and code"
    full = explain_one(predictor, text)
    capped = explain_one(predictor, text, max_tokens=4)
    assert capped.scored == 4 and len(capped.tokens) == 14 and capped.truncated
    assert capped.scores[4:] == [None] * 10
    assert capped.scores[:4] == pytest.approx(full.scores[:4], abs=1e-6)  # same variants, same scores
    record = capped.to_dict()
    assert record["tokens_scored"] == 4 and record["tokens_total"] == 14
    assert record["note"] == "only the first 4 of 14 tokens were scored"
    assert {item["position"] for item in record["top"]} <= {0, 1, 2, 3}
    assert summary(capped).endswith("(scored the first 4 of 14 tokens)")


def test_empty_and_unknown_documents(predictor: Predictor) -> None:
    empty = explain_one(predictor, "")
    assert empty.tokens == [] and empty.scored == 0 and empty.to_dict()["top"] == []
    assert empty.label == predictor.predict([""])[0].label
    unknown = explain_one(predictor, "zzyzx pizza")
    assert unknown.known == [False, True]
    assert "zzyzx (unknown)" in summary(unknown)
    # One token: deleting it leaves an empty document, which rnnclf reads as one <unk>.
    single = explain_one(predictor, "pizza")
    label = predictor.labels.index(single.label)
    probabilities = predictor.probabilities(["pizza", ""])
    assert single.scores[0] == pytest.approx(
        (probabilities[0, label] - probabilities[1, label]).item(), abs=1e-5
    )


def test_highlighting_colours_tokens_by_score(predictor: Predictor) -> None:
    explanation = explain_one(predictor, "the pizza and a cheese", max_tokens=4)
    line = highlighted(explanation)
    assert line.plain == "the pizza and a cheese"
    styles = {line.plain[span.start : span.end]: str(span.style) for span in line.spans}
    assert styles["cheese"] == "dim"  # past the cap: not scored
    strongest = max(range(4), key=lambda i: abs(explanation.scores[i]))
    colour = "on green" if explanation.scores[strongest] > 0 else "on red"
    assert colour in styles[explanation.tokens[strongest]]


def test_predict_explain_cli(tiny_run: Path) -> None:
    texts = ["the pizza and the cheese were good", "a late goal for the team"]
    result = cli("predict", "--model", tiny_run, "--explain", "--json", *texts)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == texts
    for record in records:
        explanation = record["explanation"]
        assert explanation["method"] == "occlusion" and explanation["label"] == record["label"]
        assert explanation["probability"] == pytest.approx(record["probabilities"][record["label"]], abs=1e-6)
        assert explanation["tokens_scored"] == explanation["tokens_total"] == len(record["text"].split())
        scores = [item["score"] for item in explanation["top"]]
        assert scores == sorted(scores, reverse=True)
        assert set(explanation["top"][0]) == {"token", "position", "score", "known"}

    lines = cli("predict", "--model", tiny_run, "--explain", texts[0]).stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(records[0]["label"] + "\t")
    top = records[0]["explanation"]["top"][0]
    assert lines[1].startswith(f"  why {records[0]['label']}: {top['token']} {top['score']:+.3f}")
    assert lines[2] == "  " + texts[0]

    # Without --explain the output is unchanged: no explanation key.
    plain = cli("predict", "--model", tiny_run, "--json", texts[0]).stdout
    assert "explanation" not in json.loads(plain)
