"""Tests for rnnclf.ngrams: the naive-Bayes n-gram weights, against numbers worked out by hand."""

from __future__ import annotations

import math

import torch

from rnnclf.batching import Encoded
from rnnclf.ngrams import MIX, naive_bayes_weights

VOCAB, BUCKETS = 10, 97


def encoded(documents: list[list[int]], labels: list[int]) -> Encoded:
    ids = torch.tensor([word for document in documents for word in document], dtype=torch.int32)
    lengths = torch.tensor([len(document) for document in documents])
    return Encoded.from_lengths(ids, lengths, torch.tensor(labels))


def test_weights_match_the_smoothed_log_count_ratios_worked_by_hand() -> None:
    # Class 0: two documents, class 1: one. Smoothing: two pseudo-documents, 4/3 for class 0, 2/3 for 1.
    data = encoded([[5, 5, 9], [5, 7], [6]], [0, 0, 1])
    weights = naive_bayes_weights(data, num_classes=2, order=1, vocab_size=VOCAB, buckets=BUCKETS)
    assert weights.shape == (VOCAB + BUCKETS,)
    # Word 5 is in both class-0 documents (twice in one: counted once) and in no class-1 document:
    # P(5 | 0) = (2 + 4/3) / 2, P(5 | 1) = (0 + 2/3) / 1, ratio 2.5 (class 1's ratio is its inverse).
    assert math.isclose(weights[5], math.log(2.5), rel_tol=1e-6)
    assert math.isclose(weights[6], math.log(2.5), rel_tol=1e-6)  # only in the class-1 document
    assert math.isclose(weights[9], math.log(1.75), rel_tol=1e-6)  # (1 + 4/3) / 2 over (0 + 2/3) / 1
    # Words never seen, and every unused bucket, say nothing.
    assert weights[3] < 1e-6 and weights[VOCAB:].max() < 1e-6  # 0 up to rounding


def test_a_balanced_corpus_weighs_a_once_seen_ngram_log_2_and_an_even_one_0() -> None:
    data = encoded([[5, 7, 2], [6, 8, 2], [4, 2], [3, 2]], [0, 1, 0, 1])
    weights = naive_bayes_weights(data, num_classes=2, order=2, vocab_size=VOCAB, buckets=BUCKETS)
    bigram = VOCAB + (5 * MIX + 7) % BUCKETS  # the documented hash of (5, 7)
    assert math.isclose(weights[bigram], math.log(2), rel_tol=1e-6)
    assert math.isclose(weights[5], math.log(2), rel_tol=1e-6)
    assert weights[2] < 1e-6  # in every document: tells the classes nothing
    bigrams = [(5, 7), (7, 2), (6, 8), (8, 2), (4, 2), (3, 2)]  # each in one document, none shared
    used = {VOCAB + (first * MIX + second) % BUCKETS for first, second in bigrams}
    assert len(used) == 6 and set(weights[VOCAB:].gt(1e-6).nonzero().flatten().add(VOCAB).tolist()) == used


def test_many_classes_take_the_strongest_class_and_a_missing_class_adds_nothing() -> None:
    # Four classes, class 3 has no training documents: its ratios must not be inf or nan.
    data = encoded([[5], [5], [6], [7]], [0, 0, 1, 2])
    weights = naive_bayes_weights(data, num_classes=4, order=1, vocab_size=VOCAB, buckets=BUCKETS)
    assert torch.isfinite(weights).all()
    # Word 5 for class 0 (2 of 4 documents, 1 pseudo-document): (2 + 1) / 2 over (0 + 1) / 2 -> log 3.
    # For class 1 (1 of 4, 0.5 pseudo): (0 + 0.5) / 1 over (2 + 1.5) / 3, smaller in size; the max wins.
    assert math.isclose(weights[5], max(math.log(3), abs(math.log(0.5 / (3.5 / 3)))), rel_tol=1e-6)
    assert weights[3] < 1e-6
