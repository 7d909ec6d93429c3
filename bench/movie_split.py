"""A validation split of IMDB train that holds out whole movies (approximately), for tuning.

IMDB's test reviews are about other movies than its training reviews (Maas et al. 2011), but a random
validation split shares movies with train: names and plot words of a movie then help on validation and
not on test, so choices that memorise look better than they are (random split ~2 points above test).
The data carry no movie ids, so reviews of one movie are found by the words they share that few other
reviews use: TF-IDF over words in at most 30 training reviews (a movie has at most 30), cosine
similarity. Reviews are drawn at random as seeds; each brings into validation every review at cosine
>= --join of it; finally train drops every review at cosine >= --purge of any validation review.

    pip install scikit-learn        # used by this script only; not a dependency of rnnclf
    python bench/movie_split.py --out /tmp/movies            # writes train.csv.gz and valid.csv.gz
    rnnclf train configs/imdb.yaml --set data.train=/tmp/movies/train.csv.gz \
        --set data.valid=/tmp/movies/valid.csv.gz --set data.test=null

With the defaults (seed 1): 2,501 validation reviews, 2,625 purged, 19,874 left to train on.
"""

from __future__ import annotations

import argparse
import csv
import gzip
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", default="../shared/data/imdb/train.csv.gz")
    parser.add_argument("--out", required=True, help="folder for train.csv.gz and valid.csv.gz")
    parser.add_argument("--size", type=int, default=2500, help="validation reviews (at least)")
    parser.add_argument("--join", type=float, default=0.3, help="cosine that puts a review beside its seed")
    parser.add_argument(
        "--purge", type=float, default=0.3, help="cosine to validation that drops a train review"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    with gzip.open(args.train, "rt", encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    texts = [row["text"].replace("<br />", " ") for row in rows]
    total = len(rows)
    words = TfidfVectorizer(
        min_df=2, max_df=30 / total, sublinear_tf=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b"
    )
    x = words.fit_transform(texts).tocsr()  # (N, words) rows of unit length
    x_t = x.T.tocsc()
    order = np.random.default_rng(args.seed).permutation(total)
    valid: set[int] = set()
    for seed in order:
        if len(valid) >= args.size:
            break
        if seed in valid:
            continue
        similarity = (x[seed] @ x_t).toarray()[0]  # (N,)
        valid.update(np.flatnonzero(similarity >= args.join).tolist())
        valid.add(int(seed))
    held = np.array(sorted(valid))
    near = np.zeros(total, dtype=bool)
    for start in range(0, len(held), 500):
        near |= ((x[held[start : start + 500]] @ x_t).toarray() >= args.purge).any(axis=0)
    near[held] = False
    train = [i for i in range(total) if i not in valid and not near[i]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, indices in (("train", train), ("valid", held.tolist())):
        with gzip.open(out / f"{name}.csv.gz", "wt", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["text", "label"])
            writer.writerows([rows[i]["text"], rows[i]["label"]] for i in indices)
    labels = Counter(rows[i]["label"] for i in held)
    print(f"valid {len(held)} {dict(labels)}, purged {int(near.sum())}, train {len(train)} -> {out}")


if __name__ == "__main__":
    main()
