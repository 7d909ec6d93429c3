"""Tokenizers: torchtext 0.18 conformance vectors, a literal regex reference, hypothesis properties."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnclf.errors import RnnclfError
from rnnclf.text.tokenizers import TOKENIZERS, basic_english_tokenize, get_tokenizer

CONFORMANCE = Path(__file__).parent / "conformance" / "torchtext_basic_english.jsonl"


def _load_vectors() -> list[tuple[int, dict]]:
    vectors = []
    with CONFORMANCE.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                vectors.append((lineno, json.loads(line)))
    return vectors


VECTORS = _load_vectors()

# torchtext/data/utils.py (v0.18.0) _basic_english_normalize, written out as the 12 re.sub calls.
_REF_PATTERNS = [
    (re.compile(r"\'"), " '  "),
    (re.compile(r"\""), ""),
    (re.compile(r"\."), " . "),
    (re.compile(r"<br \/>"), " "),
    (re.compile(r","), " , "),
    (re.compile(r"\("), " ( "),
    (re.compile(r"\)"), " ) "),
    (re.compile(r"\!"), " ! "),
    (re.compile(r"\?"), " ? "),
    (re.compile(r"\;"), " "),
    (re.compile(r"\:"), " "),
    (re.compile(r"\s+"), " "),
]


def reference_basic_english(line: str) -> list[str]:
    line = line.lower()
    for pattern, replacement in _REF_PATTERNS:
        line = pattern.sub(replacement, line)
    return line.split()


# ---------------------------------------------------------------------------------------------- vectors
def test_vector_file_is_complete():
    assert len(VECTORS) == 44


@pytest.mark.parametrize(("lineno", "vector"), VECTORS, ids=[f"line{n}" for n, _ in VECTORS])
def test_basic_english_conformance(lineno, vector):
    assert get_tokenizer("basic_english")(vector["text"]) == vector["tokens"]


@pytest.mark.parametrize(("lineno", "vector"), VECTORS, ids=[f"line{n}" for n, _ in VECTORS])
def test_reference_matches_conformance(lineno, vector):
    # The in-test reference must itself agree with torchtext, or the hypothesis check proves nothing.
    assert reference_basic_english(vector["text"]) == vector["tokens"]


# ---------------------------------------------------------------------------------------------- examples
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ('<br "/>x', ["x"]),  # quote removal creates a break: must happen before <br /> replacement
        ("<br;/>x", ["<br", "/>x"]),  # ; becomes a space only after the break pass
        ("<br:/>x", ["<br", "/>x"]),
        ("<br />", []),
        ("<BR />a<Br/>b", ["a<br/>b"]),
        ("it's", ["it", "'", "s"]),
        ("a\u00a0b\u2003c\u0085d\u001ce\u200bf", ["a", "b", "c", "d", "e\u200bf"]),
        ("", []),
        ("   \n\t ", []),
    ],
)
def test_basic_english_examples(text, tokens):
    assert basic_english_tokenize(text) == tokens
    assert reference_basic_english(text) == tokens


def test_whitespace_tokenizer():
    assert get_tokenizer("whitespace")("  Hello,  World!\n\u00a0ok ") == ["Hello,", "World!", "ok"]


def test_char_tokenizer():
    assert get_tokenizer("char")("Hi,\n\n you ") == ["H", "i", ",", " ", "y", "o", "u"]
    assert get_tokenizer("char")(" \t ") == []


def test_tokenizers_tuple_and_lookup():
    assert TOKENIZERS == ("basic_english", "whitespace", "char")
    for name in TOKENIZERS:
        tok = get_tokenizer(name)
        assert callable(tok)
        assert pickle.loads(pickle.dumps(tok)) is tok


@pytest.mark.parametrize("name", ["spacy", "Basic_English", "", None, 3])
def test_unknown_tokenizer(name):
    with pytest.raises(RnnclfError) as exc:
        get_tokenizer(name)
    msg = str(exc.value)
    assert "\n" not in msg
    for allowed in TOKENIZERS:
        assert allowed in msg


# ---------------------------------------------------------------------------------------------- hypothesis
_WHITESPACE = [chr(c) for c in range(0x3001) if chr(c).isspace()]
_SPECIAL_CHARS = list("<br />'\".,()!?;:BR") + _WHITESPACE + ["\u200b", "\u0130", "\u00df"]
_FRAGMENTS = ["<br />", "<BR />", "<br ", "/>", '"', "<br", " />", "''", "...", "<br\u00a0/>"]
# near-breaks: one character between "<br" and "/>" that a substitution may remove or turn into a space
_near_break = st.builds(
    "{}{}{}/>".format,
    st.sampled_from(["<br", "<BR", "<br "]),
    st.sampled_from(['"', '""', ";", ":", " ", "'", ".", ",", "\t", "\u2003"]),
    st.sampled_from(["", " ", '"', ";", ":"]),
)

_special_text = st.lists(
    st.one_of(
        st.sampled_from(_FRAGMENTS),
        _near_break,
        st.text(alphabet=st.sampled_from(_SPECIAL_CHARS), max_size=6),
    ),
    max_size=12,
).map("".join)
_any_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(exclude_categories=[])),  # includes lone surrogates
    _special_text,
    st.text(alphabet=st.one_of(st.sampled_from(_SPECIAL_CHARS), st.characters())),
)


@settings(max_examples=200, deadline=None)
@given(_any_text)
def test_basic_english_equals_reference(text):
    assert basic_english_tokenize(text) == reference_basic_english(text)


@settings(max_examples=100, deadline=None)
@given(_any_text)
def test_tokenizers_never_raise(text):
    for name in TOKENIZERS:
        tokens = get_tokenizer(name)(text)
        assert isinstance(tokens, list)
        assert all(isinstance(t, str) and t for t in tokens)
        if name != "char":
            assert all(not any(c.isspace() for c in t) for t in tokens)
    assert "".join(get_tokenizer("char")(text)) == " ".join(text.split())
