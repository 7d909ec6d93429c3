#!/usr/bin/env python3
"""Reference trainer written the way the L15 lecture notebook does it (packed LSTM, plain PyTorch loop).

It is a measuring stick, not a product: it times `--batches` training steps of the lecture's model
(Embedding 128 -> LSTM 256 -> Linear, Adam lr 0.005, batch 128, vocab 20k, packed sequences) on a
`text,label` CSV(.gz) and prints words per second (tokens that went through the LSTM, padding excluded).
Run it beside the project's own trainer on the same data and machine and compare the two rates.

    python seed_reference.py ../shared/data/imdb/train.csv.gz --batches 20
"""

import argparse, csv, gzip, re, sys, time
from collections import Counter

import torch
import torch.nn as nn

csv.field_size_limit(sys.maxsize)
PATTERNS = [
    (re.compile(p), r)
    for p, r in [
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
]


def tokenize(line):
    line = line.lower()
    for pat, rep in PATTERNS:
        line = pat.sub(rep, line)
    return line.split()


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size, num_classes, embed=128, hidden=256):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn = nn.LSTM(embed, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, text, lengths):
        embedded = self.embedding(text)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, enforce_sorted=False)
        _, (hidden, _) = self.rnn(packed)
        return self.fc(hidden.squeeze(0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=0, help="truncate documents (0: keep whole)")
    args = ap.parse_args()
    torch.manual_seed(123)
    opener = gzip.open if args.csv.endswith(".gz") else open
    t0 = time.perf_counter()
    with opener(args.csv, "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    docs = [tokenize(r["text"]) for r in rows]
    if args.max_len:
        docs = [d[: args.max_len] for d in docs]
    counts = Counter(t for d in docs for t in d)
    itos = ["<unk>", "<pad>"] + [t for t, _ in counts.most_common(20000)]
    stoi = {t: i for i, t in enumerate(itos)}
    labels = sorted({r["label"] for r in rows})
    ids = [[stoi.get(t, 0) for t in d] or [0] for d in docs]
    ys = [labels.index(r["label"]) for r in rows]
    prep_s = time.perf_counter() - t0
    model = LSTMClassifier(len(itos), len(labels))
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    order = torch.randperm(len(ids)).tolist()
    words = 0
    t1 = time.perf_counter()
    for b in range(args.batches):
        idx = order[b * args.batch_size : (b + 1) * args.batch_size]
        seqs = [torch.tensor(ids[i]) for i in idx]
        lengths = torch.tensor([len(s) for s in seqs])
        text = nn.utils.rnn.pad_sequence(seqs, padding_value=1)
        loss = nn.functional.cross_entropy(model(text, lengths), torch.tensor([ys[i] for i in idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        words += int(lengths.sum())
    train_s = time.perf_counter() - t1
    print(
        f"prep_s={prep_s:.1f} docs={len(ids)} train_s={train_s:.1f} batches={args.batches} "
        f"words={words} words_per_s={words / train_s:.0f}"
    )


if __name__ == "__main__":
    main()
