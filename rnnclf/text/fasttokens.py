"""Many documents tokenized in one call on Apache Arrow's compiled string kernels, token for token
as rnnclf.text.tokenizers tokenizes one document at a time (that pure-Python code stays the reference and the
fallback).

    texts --basic_english_normalize (Python: lower + str.replace)--> Arrow strings
          --trim, split on whitespace--> token lists --truncate--> dictionary-encode
          --> (local itos, ids, lengths), exactly what encoding.tokenize_plain's loop returns

The per-token work (splitting, cutting, numbering each token by first sight) then never makes a
Python object; only each distinct token becomes a `str`. Why Arrow and not Hugging Face `tokenizers`:
on IMDB reviews `tokenizers` measured 4-8x slower than the pure-Python loop (bench/tokenize_speed.py),
because its normalizers and pre-tokenizers track an alignment for every byte, while this path is
1.6-1.9x faster than the loop. Optional: `pip install 'rnnclf[fast]'` (pyarrow); without it, or with
RNNCLF_FAST_TOKENS=0, every caller gets the same result from the loop.

Why the result is exact:
* the normalization is text.basic_english_normalize itself, run in Python (`str.lower` has
  context rules, such as the Greek final sigma, that Arrow's `utf8_lower` lacks);
* Arrow's UTF-8 whitespace (`utf8_trim_whitespace`, `utf8_split_whitespace`) is the set `str.split()`
  uses (`str.isspace`): the tests check every code point;
* `utf8_split_whitespace` keeps empty strings at the ends of a text that starts or ends in
  whitespace, so texts are trimmed first, and a text trimmed to "" becomes null (no tokens);
* text that is not valid UTF-8 (a lone surrogate) cannot enter Arrow: that call takes the loop.
"""

from __future__ import annotations

import functools
import os
from array import array
from collections.abc import Callable
from typing import Any

from rnnclf.text.tokenizers import basic_english_normalize

__all__ = ["MIN_TEXTS", "available", "tokenize_many"]

# Below this many documents the loop costs about as little, and a cold `rnnclf predict "text"` never
# imports pyarrow (~0.05-0.1 s).
MIN_TEXTS = 512
# Documents per Arrow block: the copies a block needs (normalized text, Arrow strings, split tokens)
# stay a few tens of MB whatever the size of the file.
BLOCK_TEXTS = 8192

# Tokenizers this path reproduces, with the Python normalization run before splitting on whitespace.
_NORMALIZE: dict[str, Callable[[str], str] | None] = {
    "basic_english": basic_english_normalize,
    "whitespace": None,
}

Plain = tuple[list[str], array, array]  # (local itos, ids, lengths), as encoding.tokenize_plain


@functools.cache
def _arrow() -> tuple[Any, Any] | None:
    """(pyarrow, pyarrow.compute), imported on first use; None when pyarrow is missing or older than
    16 (list views, which truncation uses; the parquet extra alone accepts pyarrow 14)."""
    try:
        import pyarrow
        import pyarrow.compute
    except ImportError:
        return None
    if int(pyarrow.__version__.split(".")[0]) < 16:
        return None
    return pyarrow, pyarrow.compute


def available() -> bool:
    """Whether tokenize_many can run here: pyarrow installed and RNNCLF_FAST_TOKENS is not "0"."""
    return os.environ.get("RNNCLF_FAST_TOKENS", "1") != "0" and _arrow() is not None


def tokenize_many(
    texts: list[str], tokenizer: str, max_length: int, truncate: str, min_texts: int | None = None
) -> Plain | None:
    """(local itos, ids, lengths) of `texts`, tokenized by `tokenizer` and cut to `max_length` tokens
    (`truncate`: head, tail or head_tail, as encoding.truncator); tokens numbered in order of first
    sight. None when this path does not apply (few texts, the char tokenizer, no pyarrow, text that
    is not valid UTF-8): the caller then runs the pure-Python loop. Makes no torch calls (forked
    workers run it)."""
    if len(texts) < (MIN_TEXTS if min_texts is None else min_texts):
        return None
    if tokenizer not in _NORMALIZE or not available():
        return None
    pa, pc = _arrow()  # type: ignore[misc]
    normalize = _NORMALIZE[tokenizer]
    local: dict[str, int] = {}
    ids, lengths = array("i"), array("i")
    for start in range(0, len(texts), BLOCK_TEXTS):
        block = texts[start : start + BLOCK_TEXTS]
        try:
            strings = pa.array(block if normalize is None else list(map(normalize, block)), pa.large_string())
        except (UnicodeEncodeError, pa.ArrowException):  # lone surrogates are not UTF-8; a non-str
            return None  # value: the loop raises the error a user sees either way
        tokens, counts = _cut(pa, pc, _split(pa, pc, strings), max_length, truncate)  # (T,), (D,)
        encoded = pc.dictionary_encode(tokens)
        # Block-local ids -> ids of the whole call: one dict step per distinct token, one gather per token.
        table = [local.setdefault(token, len(local)) for token in encoded.dictionary.to_pylist()]
        _append_int32(ids, pc.take(pa.array(table, pa.int32()), encoded.indices))
        _append_int32(lengths, counts)
    return list(local), ids, lengths


def _split(pa: Any, pc: Any, strings: Any) -> Any:
    """Split every string on runs of whitespace, as str.split(): list<string> with one list per text."""
    trimmed = pc.utf8_trim_whitespace(strings)
    # "" would split into [""]: a null text splits into a null list, which has no tokens.
    return pc.utf8_split_whitespace(pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed))


def _cut(pa: Any, pc: Any, lists: Any, limit: int, truncate: str) -> tuple[Any, Any]:
    """(tokens kept, flat; tokens kept per document) under encoding.truncator's rule for `truncate`.

    Every document keeps a head [0, h) and a tail [t, n) of its n tokens: h = min(n, head budget),
    t = max(h, n - tail budget), with budgets (limit, 0) for head, (0, limit) for tail and
    (limit // 4, the rest) for head_tail. The arithmetic is per document; one gather of the two
    segments in order (a list view) then moves the kept tokens.
    """
    counts = pc.fill_null(pc.list_value_length(lists), 0).cast(pa.int32())  # (D,)
    longest = pc.max(counts).as_py()
    if longest is None or longest <= limit:
        return pc.list_flatten(lists), counts
    head_budget = {"head": limit, "tail": 0}.get(truncate, limit // 4)
    tail_budget = limit - head_budget

    def int32(value: int) -> Any:
        return pa.scalar(value, pa.int32())

    starts = lists.offsets.slice(0, len(lists))  # (D,) lists is fresh from the split: offset 0
    head = pc.min_element_wise(counts, int32(head_budget))  # (D,) h
    tail = pc.max_element_wise(head, pc.subtract(counts, int32(tail_budget)))  # (D,) t
    # Segment i of 2D: document i // 2, its head when i is even, its tail when odd.
    segment = pc.subtract(pc.cumulative_sum(pa.repeat(int32(1), 2 * len(counts))), int32(1))  # (2D,)
    order = pc.add(pc.divide(segment, int32(2)), pc.multiply(pc.bit_wise_and(segment, int32(1)), len(counts)))
    offsets = pa.concat_arrays([starts, pc.add(starts, tail)]).take(order)  # (2D,)
    sizes = pa.concat_arrays([head, pc.subtract(counts, tail)]).take(order)  # (2D,)
    kept = pc.list_flatten(pa.ListViewArray.from_arrays(offsets, sizes, lists.values))
    return kept, pc.min_element_wise(counts, int32(limit))


def _append_int32(out: array, values: Any) -> None:
    """Append an Arrow int32 array without nulls to an array("i") (a copy of its data buffer)."""
    assert str(values.type) == "int32" and out.itemsize == 4 and not values.null_count
    if len(values):
        start = values.offset * 4
        out.frombytes(memoryview(values.buffers()[1])[start : start + len(values) * 4])
