"""The tokenizers and truncation written down as data, and the specials' fixed places: what an exported
model's JSON carries so that text can be turned into ids anywhere, without rnnclf (issue 25, item 8).

    tokenizer_rules("basic_english") -> {"lowercase": true, "replacements": [["\\'", " '  "], ...],
                                         "strip": false, "split": "whitespace"}
    apply_rules(rules, text)         -> tokens (the reference reading of those rules, used by the tests)

Rules are applied in this order: lower-case (Python's str.lower) when `lowercase`; each regex
replacement in order (Python `re` syntax: `\\s` is Unicode whitespace); strip leading and trailing
whitespace when `strip`; then split: "whitespace" cuts at every run of whitespace and drops empty
pieces (str.split()), "characters" makes every character one token. basic_english's twelve pairs are
torchtext 0.18's own (`torchtext.data.utils._basic_english_normalize`); rnnclf.text.tokenizers computes
the same tokens faster with str.replace, and the tests check the two against each other.

Torch-free on purpose: the ONNX Runtime path (rnnclf.inference.onnx_predictor) imports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rnnclf.errors import RnnclfError

PAD, UNK = "<pad>", "<unk>"
SPECIALS = [PAD, UNK]  # ids 0 and 1: <pad> fills batches, <unk> stands for words the vocabulary lacks

# torchtext 0.18's basic_english, pattern and replacement in the order it applies them.
BASIC_ENGLISH = [
    (r"\'", " '  "),
    (r"\"", ""),
    (r"\.", " . "),
    (r"<br \/>", " "),
    (r",", " , "),
    (r"\(", " ( "),
    (r"\)", " ) "),
    (r"\!", " ! "),
    (r"\?", " ? "),
    (r"\;", " "),
    (r"\:", " "),
    (r"\s+", " "),
]

_RULES: dict[str, dict[str, Any]] = {
    "basic_english": {
        "lowercase": True,
        "replacements": BASIC_ENGLISH,
        "strip": False,
        "split": "whitespace",
    },
    "whitespace": {"lowercase": False, "replacements": [], "strip": False, "split": "whitespace"},
    # char: " ".join(text.split()), one token per character
    "char": {"lowercase": False, "replacements": [(r"\s+", " ")], "strip": True, "split": "characters"},
}


def tokenizer_rules(name: str) -> dict[str, Any]:
    """The tokenizer `name` as plain JSON-ready data: lowercase, ordered regex replacements, strip, split."""
    if name not in _RULES:
        raise RnnclfError(f"unknown tokenizer {name!r}; allowed: {', '.join(_RULES)}")
    rules = _RULES[name]
    return {"name": name, **rules, "replacements": [list(pair) for pair in rules["replacements"]]}


def apply_rules(rules: dict[str, Any], text: str) -> list[str]:
    """Tokens of `text` under `rules` (tokenizer_rules' shape), read literally: the reference."""
    if rules["lowercase"]:
        text = text.lower()
    for pattern, replacement in rules["replacements"]:
        text = re.sub(pattern, replacement, text)
    if rules["strip"]:
        text = text.strip()
    return list(text) if rules["split"] == "characters" else text.split()


def truncation(max_length: int, truncate: str) -> dict[str, Any]:
    """How a long document is cut, as data: keep `head` first tokens and `tail` last ones."""
    head = {"head": max_length, "tail": 0, "head_tail": max_length // 4}[truncate]
    return {"max_length": max_length, "keep": truncate, "head": head, "tail": max_length - head}


def cutter(max_length: int, truncate: str) -> Callable[[list[str]], list[str]]:
    """Cut a token list to max_length: keep the head, the tail, or both (a quarter of the budget for the
    opening, the rest for the ending, where reviews and articles tend to conclude)."""
    limit = max_length
    if truncate == "tail":
        return lambda tokens: tokens[-limit:]
    if truncate == "head_tail":
        head = limit // 4
        tail = limit - head
        return lambda tokens: tokens if len(tokens) <= limit else tokens[:head] + tokens[len(tokens) - tail :]
    return lambda tokens: tokens[:limit]
