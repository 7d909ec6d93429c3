"""Which tokens pushed a prediction, by occlusion.

For a document of tokens t_1..t_L predicted as label y with probability p(y | doc):

    score(t_i) = p(y | doc) - p(y | doc with t_i deleted)

positive: the token supported y (without it y loses probability); negative: it argued against y.
The document and its L variants (one per deleted token) are scored together, in the padded batches
`rnnclf predict` uses; the model handles padding exactly, so each gets the score it would get alone.
Deleting (rather than replacing by <unk> or <pad>) asks "what if this word were not there", and needs
no choice of filler.

Cost: L + 1 documents of about L tokens each, so a long document is scored only on its first
`max_tokens` tokens (the rest stay in every variant, unscored); the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rnnclf.batching import Encoded
from rnnclf.inference.predict import Predictor
from rnnclf.inference.scoring import logits_for
from rnnclf.text.encoding import UNK, ids_of, tokens_of

METHOD = "occlusion"
MAX_TOKENS = 200  # tokens scored per document (the first ones)
TOP = 10  # tokens listed per document in --json output


@dataclass
class Explanation:
    label: str
    probability: float  # p(label | document)
    tokens: list[str]  # what the model read: tokenized and truncated as in training
    known: list[bool]  # token in the vocabulary (else the model saw <unk>)
    scores: list[float | None]  # per token; None past the first `scored` tokens
    scored: int

    @property
    def truncated(self) -> bool:
        return self.scored < len(self.tokens)

    def top(self, count: int = TOP) -> list[dict[str, Any]]:
        """The tokens that pushed the prediction most, strongest first."""
        ranked = sorted(range(self.scored), key=lambda i: (-(self.scores[i] or 0.0), i))
        return [
            {"token": self.tokens[i], "position": i, "score": self.scores[i], "known": self.known[i]}
            for i in ranked[:count]
        ]

    def to_dict(self, count: int = TOP) -> dict[str, Any]:
        result = {
            "method": METHOD,
            "label": self.label,
            "probability": self.probability,
            "tokens_scored": self.scored,
            "tokens_total": len(self.tokens),
            "top": self.top(count),
        }
        if self.truncated:
            result["note"] = f"only the first {self.scored} of {len(self.tokens)} tokens were scored"
        return result


def _probabilities(predictor: Predictor, documents: list[list[int]]) -> torch.Tensor:
    """(N, C) probabilities of token id lists, through the same batching as `rnnclf predict`
    (multi-label: each label's sigmoid)."""
    lengths = torch.tensor([len(document) for document in documents], dtype=torch.int64)  # (N,)
    flat = torch.tensor([token for document in documents for token in document], dtype=torch.int32)
    data = Encoded.from_lengths(flat, lengths, torch.zeros(len(documents), dtype=torch.int64))
    # The predictor's precision: the explained probability is the one `rnnclf predict` shows.
    logits = logits_for(predictor.model, data, predictor.device, predictor.precision)
    return predictor.to_probabilities(logits)


def explain_one(predictor: Predictor, text: str, max_tokens: int = MAX_TOKENS) -> Explanation:
    """Occlusion scores of the first `max_tokens` tokens of one document, for its predicted label."""
    tokens, probabilities, scored = _occluded(predictor, text, max_tokens)  # (1 + scored, C)
    label = int(probabilities[0].argmax())  # first of equal maxima, as Predictor.predict's stable sort
    return _explanation(predictor, tokens, probabilities, scored, label)


def explain_labels(
    predictor: Predictor, text: str, labels: list[str], max_tokens: int = MAX_TOKENS
) -> list[Explanation]:
    """Multi-label: occlusion scores for each of the given (chosen) labels, from one scoring pass."""
    tokens, probabilities, scored = _occluded(predictor, text, max_tokens)
    index = {name: i for i, name in enumerate(predictor.labels)}
    return [_explanation(predictor, tokens, probabilities, scored, index[name]) for name in labels]


def _occluded(predictor: Predictor, text: str, max_tokens: int) -> tuple[list[str], torch.Tensor, int]:
    """The tokens, the probabilities (1 + scored, C) of the document and of each variant with one of its
    first `max_tokens` tokens deleted, and how many tokens were scored."""
    tokens = tokens_of(text, predictor.config.text)
    ids = ids_of(tokens, predictor.vocab)
    unknown = predictor.vocab[UNK]
    scored = min(len(ids), max_tokens)
    # The document itself first, then one variant per scored token with that token deleted. An empty
    # document is one <unk>, as in training and prediction (encoding.encode_part).
    variants = [ids or [unknown]] + [(ids[:i] + ids[i + 1 :]) or [unknown] for i in range(scored)]
    return tokens, _probabilities(predictor, variants), scored


def _explanation(
    predictor: Predictor, tokens: list[str], probabilities: torch.Tensor, scored: int, label: int
) -> Explanation:
    stoi = predictor.vocab.get_stoi()
    drops = (probabilities[0, label] - probabilities[1:, label]).tolist()  # (scored,)
    return Explanation(
        label=predictor.labels[label],
        probability=float(probabilities[0, label]),
        tokens=tokens,
        known=[token in stoi for token in tokens],
        scores=drops + [None] * (len(tokens) - scored),
        scored=scored,
    )


def explain(predictor: Predictor, texts: list[str], max_tokens: int = MAX_TOKENS) -> list[Explanation]:
    return [explain_one(predictor, text, max_tokens) for text in texts]


def summary(explanation: Explanation, count: int = 5) -> str:
    """'pizza +0.412, cheese +0.233, ...': the strongest tokens with their scores (plain text, so the
    answer survives a pipe, where colours are dropped)."""
    parts = [
        f"{item['token']}{'' if item['known'] else ' (unknown)'} {item['score']:+.3f}"
        for item in explanation.top(count)
    ]
    note = f" (scored the first {explanation.scored} of {len(explanation.tokens)} tokens)"
    return ", ".join(parts) + (note if explanation.truncated else "")
