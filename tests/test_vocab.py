"""Vocab / build_vocab_from_iterator: torchtext 0.18 conformance vectors, behaviour, hypothesis properties."""

from __future__ import annotations

import json
import pickle
from collections import Counter, OrderedDict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnclf.errors import RnnclfError
from rnnclf.text.vocab import Vocab, build_vocab_from_iterator

CONFORMANCE = Path(__file__).parent / "conformance" / "torchtext_vocab.jsonl"


def _load_vectors() -> list[dict]:
    vectors = []
    with CONFORMANCE.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                vectors.append(json.loads(line))
    return vectors


VECTORS = _load_vectors()


def reference_itos(token_lists, min_freq=1, specials=None, special_first=True, max_tokens=None):
    """torchtext/vocab/vocab_factory.py (v0.18.0), build_vocab_from_iterator + vocab, minus the C++ part."""
    counter = Counter()
    for tokens in token_lists:
        counter.update(tokens)
    specials = specials or []
    sorted_by_freq_tuples = sorted(counter.items(), key=lambda x: (-x[1], x[0]))
    if max_tokens is None:
        ordered_dict = OrderedDict(sorted_by_freq_tuples)
    else:
        assert len(specials) < max_tokens
        ordered_dict = OrderedDict(sorted_by_freq_tuples[: max_tokens - len(specials)])
    for token in specials:
        ordered_dict.pop(token, None)
    tokens = [token for token, freq in ordered_dict.items() if freq >= min_freq]
    if special_first:
        tokens[0:0] = specials
    else:
        tokens.extend(specials)
    assert len(set(tokens)) == len(tokens)  # C++ Vocab constructor rejects duplicates
    return tokens


# ---------------------------------------------------------------------------------------------- vectors
def test_vector_file_is_complete():
    assert len(VECTORS) == 5


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_build_vocab_conformance(vector):
    vocab = build_vocab_from_iterator(iter(vector["token_lists"]), **vector["params"])
    assert vocab.get_itos() == vector["itos"]
    assert vocab.get_default_index() is None


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_reference_matches_conformance(vector):
    assert reference_itos(vector["token_lists"], **vector["params"]) == vector["itos"]


# ---------------------------------------------------------------------------------------------- building
def test_build_accepts_generator_and_defaults():
    vocab = build_vocab_from_iterator(t.split() for t in ["b a", "a c"])
    assert vocab.get_itos() == ["a", "b", "c"]


def test_build_max_tokens_must_exceed_specials():
    with pytest.raises(RnnclfError, match="max_tokens"):
        build_vocab_from_iterator([["a"]], specials=["<unk>", "<pad>"], max_tokens=2)
    with pytest.raises(RnnclfError, match="max_tokens"):
        build_vocab_from_iterator([["a"]], max_tokens=0)
    assert build_vocab_from_iterator([["a", "b"]], specials=["<unk>"], max_tokens=2).get_itos() == [
        "<unk>",
        "a",
    ]


def test_build_duplicate_specials():
    with pytest.raises(RnnclfError, match="duplicate"):
        build_vocab_from_iterator([["a"]], specials=["<unk>", "<unk>"])


def test_build_non_string_token():
    with pytest.raises(RnnclfError):
        build_vocab_from_iterator([["a", 1]])


# ---------------------------------------------------------------------------------------------- Vocab
def _vocab() -> Vocab:
    return Vocab(["<unk>", "<pad>", "the", "movie"])


def test_lookup_and_contains():
    v = _vocab()
    assert len(v) == 4
    assert "the" in v and "film" not in v
    assert v["movie"] == 3
    assert v.lookup_indices(["the", "movie"]) == [2, 3]
    assert v(["movie", "the"]) == [3, 2]
    assert v.lookup_token(1) == "<pad>"
    assert v.lookup_tokens([3, 0]) == ["movie", "<unk>"]


def test_unknown_token_without_default():
    v = _vocab()
    assert v.get_default_index() is None
    with pytest.raises(RnnclfError, match="not found and default index is not set"):
        v["film"]
    with pytest.raises(RnnclfError, match="'film' not found"):
        v.lookup_indices(["the", "film"])
    with pytest.raises(RnnclfError):
        v(["film"])


def test_default_index():
    v = _vocab()
    v.set_default_index(0)
    assert v.get_default_index() == 0
    assert v["film"] == 0
    assert v(["the", "film", "movie"]) == [2, 0, 3]
    v.set_default_index(None)
    with pytest.raises(RnnclfError):
        v["film"]
    with pytest.raises(RnnclfError):
        v.set_default_index("0")
    assert Vocab(["a"], default_index=0)["zzz"] == 0


def test_lookup_token_bounds():
    v = _vocab()
    for bad in (-1, 4, 100):
        with pytest.raises(RnnclfError, match="out of bounds"):
            v.lookup_token(bad)
    with pytest.raises(RnnclfError):
        v.lookup_tokens([0, 4])


def test_stoi_itos_consistent_and_copies():
    v = _vocab()
    itos, stoi = v.get_itos(), v.get_stoi()
    assert stoi == {t: i for i, t in enumerate(itos)}
    itos.append("x")
    stoi["x"] = 9
    assert len(v) == 4 and "x" not in v


def test_append_and_insert_token():
    v = _vocab()
    v.set_default_index(0)
    v.append_token("film")
    assert v["film"] == 4
    with pytest.raises(RnnclfError, match="already exists"):
        v.append_token("the")
    v.insert_token("<bos>", 1)
    assert v.get_itos() == ["<unk>", "<bos>", "<pad>", "the", "movie", "film"]
    assert v.get_stoi() == {t: i for i, t in enumerate(v.get_itos())}
    assert v.get_default_index() == 0  # not shifted, as torchtext
    v.insert_token("<eos>", len(v))
    assert v.lookup_token(len(v) - 1) == "<eos>"
    with pytest.raises(RnnclfError, match="out of bounds"):
        v.insert_token("y", len(v) + 1)
    with pytest.raises(RnnclfError, match="out of bounds"):
        v.insert_token("y", -1)
    with pytest.raises(RnnclfError, match="already exists"):
        v.insert_token("film", 0)


def test_constructor_rejects_duplicates_and_non_strings():
    with pytest.raises(RnnclfError, match="duplicate"):
        Vocab(["a", "b", "a"])
    with pytest.raises(RnnclfError):
        Vocab(["a", 2])


def test_not_iterable_and_non_str_key():
    v = _vocab()
    v.set_default_index(0)
    with pytest.raises(TypeError):
        iter(v)
    with pytest.raises(TypeError):
        v[0]
    with pytest.raises(TypeError):
        v("the")


def test_to_dict_from_dict_round_trip():
    for default in (None, 0, 3):
        v = Vocab(["<unk>", "é", "\u0130", "a b"], default_index=default)
        d = v.to_dict()
        assert d == {"itos": ["<unk>", "é", "\u0130", "a b"], "default_index": default}
        # plain types only: survives JSON
        v2 = Vocab.from_dict(json.loads(json.dumps(d)))
        assert v2 == v
        assert v2.get_itos() == v.get_itos() and v2.get_default_index() == default
        assert pickle.loads(pickle.dumps(v)) == v
    d = v.to_dict()
    d["itos"].append("zzz")
    assert "zzz" not in v


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {},
        {"itos": "abc"},
        {"itos": ["a", "a"]},
        {"itos": ["a"], "default_index": "0"},
        {"itos": ["a"], "extra": 1},
    ],
)
def test_from_dict_rejects_bad_input(bad):
    with pytest.raises(RnnclfError):
        Vocab.from_dict(bad)


# ---------------------------------------------------------------------------------------------- hypothesis
_tokens = st.text(max_size=4)
_token_lists = st.lists(
    st.lists(st.one_of(st.sampled_from(["a", "b", "B", "<unk>", "é"]), _tokens), max_size=12)
)


@settings(max_examples=150, deadline=None)
@given(
    token_lists=_token_lists,
    min_freq=st.integers(min_value=1, max_value=4),
    specials=st.lists(st.sampled_from(["<unk>", "<pad>", "a", "<bos>"]), unique=True, max_size=3),
    special_first=st.booleans(),
    max_tokens=st.one_of(st.none(), st.integers(min_value=4, max_value=12)),
)
def test_build_vocab_properties(token_lists, min_freq, specials, special_first, max_tokens):
    vocab = build_vocab_from_iterator(
        iter(token_lists),
        min_freq=min_freq,
        specials=specials,
        special_first=special_first,
        max_tokens=max_tokens,
    )
    itos = vocab.get_itos()
    assert itos == reference_itos(token_lists, min_freq, specials, special_first, max_tokens)
    assert len(set(itos)) == len(itos)
    assert vocab.get_stoi() == {t: i for i, t in enumerate(itos)}

    # ordering rule, checked independently of the reference
    counts = Counter(t for tokens in token_lists for t in tokens)
    ordinary = itos[len(specials) :] if special_first else itos[: len(itos) - len(specials)]
    got_specials = itos[: len(specials)] if special_first else itos[len(itos) - len(specials) :]
    assert got_specials == specials
    keys = [(-counts[t], t) for t in ordinary]
    assert keys == sorted(keys)
    assert all(counts[t] >= min_freq and t not in specials for t in ordinary)
    if max_tokens is None:
        assert set(ordinary) == {t for t, c in counts.items() if c >= min_freq} - set(specials)
    else:
        assert len(itos) <= max_tokens
