"""The compiled tokenizing path (rnnclf.text.fasttokens, pyarrow) against the pure-Python reference: the
conformance vectors, every whitespace code point, adversarial strings, hypothesis text, IMDB reviews,
and encoding.tokenize_plain giving one result with and without pyarrow."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnclf.config import TextConfig
from rnnclf.text import fasttokens
from rnnclf.text.encoding import tokenize_plain

pytest.importorskip("pyarrow", minversion="16")

CONFORMANCE = Path(__file__).parent / "conformance" / "torchtext_basic_english.jsonl"
IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "train.csv.gz"
FAST = ("basic_english", "whitespace")
CUTS = [(10**9, "head"), (5, "head"), (5, "tail"), (5, "head_tail"), (1, "head_tail"), (2, "tail")]

ADVERSARIAL = [
    "",
    " ",
    "\n\t \u3000",
    "a",
    "  leading and trailing  ",
    "He said \"Hi!\"<br />It's (fine), isn't it? Yes; no: maybe.",
    '<br "/>x',
    "<br;/>x <br:/>y <BR />z<Br/>w <br  /> <br/> <br\u00a0/>",
    "<br /><br /><br />",
    '""""',
    "'''...,,,(((",
    # str.lower() that grows a text (U+0130) or looks at context (a final capital sigma):
    "\u0130stanbul \u00dfTRASSE \u03a3\u039f\u03a6\u039f\u03a3 \u1e9e \u2160 \ufb03",
    "tab\tnew\nline\rcr\x0bvt\x0cff\x1cfs\x1dgs\x1ers\x1fus\x85nel\xa0nbsp\u2028ls\u2029ps\u202fnn",
    "zero\u200bwidth\u200c\u200d\ufeffjoiners \u180emongolian",
    "nul\x00byte and \x07bell \x7fdel",
    "emoji \U0001f600\U0001f44d\U0001f3fd! e\u0301 combining; \u05e9\u05dc\u05d5\u05dd rtl: \u0627\u0644",
    "a" * 3000 + " " + "b " * 700,
]


def _documents(plain: tuple[list[str], object, object]) -> list[list[str]]:
    """Tokens per document, from (local itos, ids, lengths)."""
    itos, ids, lengths = plain
    documents, start = [], 0
    for length in lengths:
        documents.append([itos[i] for i in ids[start : start + length]])
        start += length
    return documents


def _reference(texts: list[str], tokenizer: str, limit: int, truncate: str) -> tuple:
    """What tokenize_plain's pure-Python loop gives (pyarrow present or not)."""
    config = TextConfig(tokenizer=tokenizer, max_length=limit, truncate=truncate)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNCLF_FAST_TOKENS", "0")
        return tokenize_plain(texts, config)


def _compiled(texts: list[str], tokenizer: str, limit: int, truncate: str) -> tuple:
    result = fasttokens.tokenize_many(texts, tokenizer, limit, truncate, min_texts=0)
    assert result is not None
    return result


def test_conformance_vectors_on_the_compiled_path() -> None:
    vectors = [json.loads(line) for line in CONFORMANCE.read_text(encoding="utf-8").splitlines() if line]
    assert len(vectors) == 44
    texts = [vector["text"] for vector in vectors]
    assert _documents(_compiled(texts, "basic_english", 10**9, "head")) == [v["tokens"] for v in vectors]
    assert _documents(_compiled(texts, "whitespace", 10**9, "head")) == [text.split() for text in texts]


@pytest.mark.parametrize("tokenizer", FAST)
@pytest.mark.parametrize(("limit", "truncate"), CUTS)
def test_adversarial_strings_equal_the_reference(tokenizer: str, limit: int, truncate: str) -> None:
    texts = ADVERSARIAL + ADVERSARIAL[::-1]  # repeats: numbering by first sight across documents
    assert _compiled(texts, tokenizer, limit, truncate) == _reference(texts, tokenizer, limit, truncate)


def test_every_code_point_splits_as_str_split() -> None:
    # Arrow's UTF-8 whitespace must be exactly str.isspace: between, before and after words.
    texts = [f"{c}a{c}b{c}" for c in map(chr, range(0x110000)) if not 0xD800 <= ord(c) < 0xE000]
    assert _compiled(texts, "whitespace", 10**9, "head") == _reference(texts, "whitespace", 10**9, "head")


def test_blocks_merge_into_one_numbering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fasttokens, "BLOCK_TEXTS", 3)  # many blocks, tokens repeating across them
    texts = [f"w{i % 7} x{i % 3} Y{i}. {'' if i % 4 else '   '}" for i in range(50)] + ADVERSARIAL
    for tokenizer in FAST:
        assert _compiled(texts, tokenizer, 3, "head_tail") == _reference(texts, tokenizer, 3, "head_tail")


_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("<br />'\".,()!?;:BR\t\n\x1c\x85\xa0\u2003\u0130\u03a3ab"))),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_text, max_size=12), st.sampled_from(FAST), st.sampled_from(CUTS))
def test_hypothesis_text_equals_the_reference(texts: list[str], tokenizer: str, cut: tuple) -> None:
    assert _compiled(texts, tokenizer, *cut) == _reference(texts, tokenizer, *cut)


def test_what_the_compiled_path_leaves_to_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["one text", "bad \ud800 surrogate"]
    assert fasttokens.tokenize_many(texts, "basic_english", 9, "head", min_texts=0) is None
    assert fasttokens.tokenize_many(texts[:1], "char", 9, "head", min_texts=0) is None
    assert fasttokens.tokenize_many(texts[:1], "basic_english", 9, "head") is None  # < MIN_TEXTS
    tokens = _documents(tokenize_plain(texts * fasttokens.MIN_TEXTS, TextConfig(tokenizer="basic_english")))
    assert tokens[1] == ["bad", "\ud800", "surrogate"]
    monkeypatch.setenv("RNNCLF_FAST_TOKENS", "0")
    assert not fasttokens.available()
    assert fasttokens.tokenize_many(texts[:1], "basic_english", 9, "head", min_texts=0) is None


@pytest.mark.parametrize("tokenizer", [*FAST, "char"])
def test_tokenize_plain_is_the_same_with_and_without_pyarrow(
    tokenizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TextConfig(tokenizer=tokenizer, max_length=6, truncate="head_tail")
    texts = (ADVERSARIAL * (fasttokens.MIN_TEXTS // len(ADVERSARIAL) + 1))[: fasttokens.MIN_TEXTS]
    with_pyarrow = tokenize_plain(texts, config)
    monkeypatch.setattr(fasttokens, "_arrow", lambda: None)  # as where pyarrow is not installed
    assert tokenize_plain(texts, config) == with_pyarrow


def test_small_inputs_never_import_pyarrow() -> None:
    # A cold `rnnclf predict "text"` must not pay for importing pyarrow.
    code = (
        "import sys; from rnnclf.text.fasttokens import tokenize_many\n"
        "assert tokenize_many(['Hi there'], 'basic_english', 9, 'head') is None\n"
        "print('pyarrow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(not IMDB.is_file(), reason="needs the shared IMDB data (../shared/data/imdb)")
def test_imdb_reviews_equal_the_reference() -> None:
    csv.field_size_limit(1 << 30)
    with gzip.open(IMDB, "rt", encoding="utf-8", newline="") as f:
        texts = [row[0] for row in islice(csv.reader(f), 1, 3001)]
    for tokenizer in FAST:
        for limit, truncate in [(10**9, "head"), (500, "head_tail"), (400, "tail"), (300, "head")]:
            expected = _reference(texts, tokenizer, limit, truncate)
            assert _compiled(texts, tokenizer, limit, truncate) == expected, (tokenizer, limit, truncate)
