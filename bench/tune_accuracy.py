#!/usr/bin/env python3
"""`rnnclf tune` against fastText autotune with the same budget and the same splits (issue 26's targets).

Per corpus and tune seed: `rnnclf tune` from the default config (init-config) with only the data section
set, --budget B, 2 threads; the test split is scored once per tune (the best trial only). Beside it,
fastText autotune (`autotuneValidationFile` = the same validation split rnnclf holds out,
`autotuneDuration` = the same budget, 2 threads), test scored once. Also the tune's own time: sampling,
storage and bookkeeping between and around trials, plus loading the cached preprocessing in every trial
after the first, as a share of the budget.

The linear baseline (fitted as the tune fits it, on the same split) is also scored once on the test
split: IMDB 5,000's target is to reach it. `--reference CONFIG` (with `--reference-set KEY=VALUE`) trains a
hand-made config once on the same split and scores it once on test, beside the tunes.

Corpora (../shared/data): trec (train split 90/10 by train.seed, 10m), imdb5000 (the first 5,000
training reviews, full IMDB test, 20m), goemotions (configs/goemotions.yaml's data section, 15m).

    python bench/tune_accuracy.py --corpus all --seeds 3                     # the targets (hours)
    python bench/tune_accuracy.py --corpus trec --budget 3m --seeds 1       # a quick check
    python bench/tune_accuracy.py --corpus trec --seeds 0 --fasttext-python "" \
        --reference configs/trec.yaml --reference-set ensemble.members=1      # the reference alone

fastText runs in its own venv (fasttext-wheel needs numpy<2): /tmp/ftvenv with `pip install fasttext-wheel
"numpy<2"`; --fasttext-python names its python ("" skips fastText). Medians over the seeds are printed,
and every number is written to OUT/results.json.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BUDGETS = {"trec": "10m", "imdb5000": "20m", "goemotions": "15m"}
THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def seconds(duration: str) -> float:
    sys.path.insert(0, str(ROOT))
    from rnnclf.schema import parse_duration

    return parse_duration(duration)


def data_section(corpus: str, out: Path) -> dict[str, Any]:
    if corpus == "trec":
        return {"train": str(DATA / "trec/train.csv.gz"), "test": str(DATA / "trec/test.csv.gz")}
    if corpus == "imdb5000":
        subset = out / "imdb-train-5000.csv"
        if not subset.exists():
            with gzip.open(DATA / "imdb/train.csv.gz", "rt", encoding="utf-8", newline="") as source:
                rows = csv.reader(source)
                header = next(rows)
                with subset.open("w", encoding="utf-8", newline="") as target:
                    writer = csv.writer(target)
                    writer.writerow(header)
                    for _, row in zip(range(5000), rows, strict=False):
                        writer.writerow(row)
        return {"train": str(subset), "test": str(DATA / "imdb/test.csv.gz")}
    if corpus == "goemotions":
        import yaml

        raw = yaml.safe_load((ROOT / "configs/goemotions.yaml").read_text(encoding="utf-8"))["data"]
        for key in ("train", "valid", "test"):
            raw[key] = str((ROOT / "configs" / raw[key]).resolve())
        return raw
    raise SystemExit(f"unknown corpus {corpus}")


def write_config(corpus: str, out: Path) -> Path:
    """init-config's defaults with the corpus's data section (and nothing else)."""
    import yaml

    from rnnclf.config import default_yaml

    raw = yaml.safe_load(default_yaml())
    raw["data"].update(data_section(corpus, out))
    raw["train"]["device"] = "cpu"
    path = out / f"{corpus}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def own_time(summary: dict[str, Any], cache_load: float) -> dict[str, float]:
    """The tune's own seconds: around trials (sampling, storage, bookkeeping: each trial's time outside
    train(), and the gaps between trials), and the cached preprocessing loaded by trials after the
    first (measured once, times their number); with --jobs N, those of the busiest worker (each worker
    has the whole budget of wall time). Setup (the first preparation, the baseline) and the end (test
    scoring, files, plots) are reported apart."""
    # Trials that ran (a queued one left waiting at the end has no start).
    trials = sorted(
        (t for t in summary["trials"] if t["started_at"] is not None), key=lambda t: t["started_at"]
    )
    workers: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:  # --jobs N: each worker's own time counts against the wall time it had
        workers.setdefault(trial.get("worker", ""), []).append(trial)
    around = [
        sum(trial["seconds"] - trial["train_seconds"] for trial in own)
        + sum(
            max(0.0, later["started_at"] - (earlier["started_at"] + earlier["seconds"]))
            for earlier, later in itertools.pairwise(own)
        )
        for own in workers.values()
    ]
    setup = trials[0]["started_at"] - summary["started_at"] if trials else 0.0
    end = summary["seconds"] - (summary["trials_ended_at"] - summary["started_at"])
    return {
        "around_trials": max(around, default=0.0),  # the busiest worker's
        "cache_loads": cache_load * max(0, max((len(own) for own in workers.values()), default=1) - 1),
        "setup": setup,
        "end": end,
    }


def cache_load_seconds(config: Path) -> float:
    """Loading the default text setting's cached preprocessing once (what a trial does at its start)."""
    from rnnclf.config import load
    from rnnclf.prepare import prepare
    from rnnclf.tuning.study import trial_config

    settings = trial_config(load(config))
    prepare(settings)  # make sure it is cached
    started = time.perf_counter()
    prepare(settings)
    return time.perf_counter() - started


def baseline_test(config: Path) -> dict[str, float]:
    """The linear baseline as the tune fits it (rnnclf.training.baseline.linear_baseline, the config's
    text settings, the same train/validation split) scored once on the test split instead of the
    validation split: IMDB's target is to reach it. Single-label corpora only (multi-label thresholds
    would be chosen on the split scored)."""
    from dataclasses import replace

    from rnnclf.config import load
    from rnnclf.prepare import prepare
    from rnnclf.training.baseline import linear_baseline

    prepared = prepare(load(config))
    if prepared.train.multi_label or prepared.test is None:
        return {}
    scored = linear_baseline(replace(prepared, valid=prepared.test))
    return {"accuracy": scored["valid"]["accuracy"]} if "valid" in scored else {}


def reference_test(config: Path, reference: Path, sets: list[str], folder: Path) -> dict[str, Any]:
    """A hand-made config (e.g. configs/trec.yaml with --reference-set ensemble.members=1) trained once
    with `rnnclf train` on the bench config's data section (the tunes' own train/validation split: same
    file, valid_fraction and train.seed) and scored once on test: what the tunes are held against."""
    import yaml

    raw = yaml.safe_load(reference.read_text(encoding="utf-8"))
    bench = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["data"] = bench["data"]
    raw.setdefault("train", {}).update(device="cpu", seed=bench["train"]["seed"])
    raw["output"] = {"run_dir": str(folder), "plots": False}
    path = folder.parent / f"{folder.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    command = ["rnnclf", "train", str(path), "--quiet", *[part for item in sets for part in ("--set", item)]]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **THREADS})
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    return {**headline(metrics.get("test")), "valid": headline(metrics.get("valid"))}


def run_tune(
    config: Path, budget: str, seed: int, folder: Path, sets: list[str], jobs: int = 1
) -> dict[str, Any] | None:
    """One tune in its own process; None (after printing why) when it ends without a best trial."""
    command = ["rnnclf", "tune", str(config), "--budget", budget, "--set", f"tune.seed={seed}", "--quiet",
               "--run-dir", str(folder), "--jobs", str(jobs)]  # fmt: skip
    command += [part for item in sets for part in ("--set", item)]
    started = time.perf_counter()
    environment = {**os.environ, **THREADS}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=folder.parent)
    if done.returncode != 0:
        print(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}", flush=True)
        return None
    summary = json.loads((folder / "tune.json").read_text(encoding="utf-8"))
    summary["command_seconds"] = time.perf_counter() - started
    return summary


def headline(scores: dict[str, Any] | None) -> dict[str, float]:
    if not scores:
        return {}
    if scores.get("multi_label"):
        return {"micro_f1": scores["micro_f1"], "macro_f1": scores["macro_f1"]}
    return {"accuracy": scores["accuracy"]}


FASTTEXT = r"""
import json, sys
import fasttext, numpy as np
train, valid, test, budget, seed, multi = sys.argv[1:7]
budget, seed, multi = int(float(budget)), int(seed), multi == "1"
options = dict(input=train, autotuneValidationFile=valid, autotuneDuration=budget, thread=2, seed=seed,
               verbose=0)
if multi:
    options.update(loss="ova", autotuneMetric="f1")
model = fasttext.train_supervised(**options)
if not multi:
    n, precision, _ = model.test(test)
    print(json.dumps({"accuracy": precision, "n": n}))
else:
    gold, guess = [], []
    for line in open(test, encoding="utf-8"):
        words = line.split()
        gold.append({w for w in words if w.startswith("__label__")})
        text = " ".join(w for w in words if not w.startswith("__label__"))
        labels, _ = model.predict(text, k=-1, threshold=0.5)
        guess.append(set(labels))
    names = sorted(set().union(*gold))
    tp = {n: 0 for n in names}; fp = dict(tp); fn = dict(tp)
    for g, p in zip(gold, guess):
        for n in names:
            tp[n] += n in g and n in p; fp[n] += n in p and n not in g; fn[n] += n in g and n not in p
    f1 = lambda t, f, m: 2 * t / (2 * t + f + m) if t + f + m else 0.0
    micro = f1(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    macro = sum(f1(tp[n], fp[n], fn[n]) for n in names) / len(names)
    print(json.dumps({"micro_f1": micro, "macro_f1": macro}))
"""


def fasttext_files(config: Path, folder: Path) -> tuple[Path, Path, Path, bool]:
    """train/valid/test in fastText's format, tokenized as rnnclf does, split exactly as rnnclf splits."""
    from rnnclf.config import load
    from rnnclf.data import read_configured
    from rnnclf.data.split import stratified_split
    from rnnclf.text.tokenizers import get_tokenizer

    settings = load(config)
    data, tokenize = settings.data, get_tokenizer(settings.text.tokenizer)

    def labels_of(label: Any) -> list[str]:
        if isinstance(label, list | tuple):
            return list(label)
        return [part for part in str(label).split(data.label_separator)] if data.multi_label else [str(label)]

    def write(path: Path, texts: list[str], labels: list[Any]) -> Path:
        with path.open("w", encoding="utf-8") as file:
            for text, label in zip(texts, labels, strict=True):
                tags = " ".join(f"__label__{name.replace(' ', '_')}" for name in labels_of(label))
                file.write(f"{tags} {' '.join(tokenize(text)[: settings.text.max_length])}\n")
        return path

    train = read_configured(data.train, data)
    if data.valid is None:
        keep, held = stratified_split(train.labels, data.valid_fraction, settings.train.seed)
        valid_texts, valid_labels = [train.texts[i] for i in held], [train.labels[i] for i in held]
        train_texts, train_labels = [train.texts[i] for i in keep], [train.labels[i] for i in keep]
    else:
        valid = read_configured(data.valid, data)
        valid_texts, valid_labels = valid.texts, valid.labels
        train_texts, train_labels = train.texts, train.labels
    test = read_configured(data.test, data)
    return (
        write(folder / "train.txt", train_texts, train_labels),
        write(folder / "valid.txt", valid_texts, valid_labels),
        write(folder / "test.txt", test.texts, test.labels),
        data.multi_label,
    )


def run_fasttext(
    python: str, files: tuple[Path, Path, Path, bool], budget: float, seed: int
) -> dict[str, float]:
    train, valid, test, multi = files
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(FASTTEXT)
    command = [
        python,
        script.name,
        str(train),
        str(valid),
        str(test),
        str(budget),
        str(seed),
        "1" if multi else "0",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **THREADS})
    os.unlink(script.name)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> str:
    values = [value for value in values if value is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="all", choices=["all", *BUDGETS])
    parser.add_argument("--budget", help="override every corpus's budget (e.g. 3m for a quick check)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="the first tune seed (then +1, ...)")
    parser.add_argument("--jobs", type=int, default=1, help="rnnclf tune --jobs (2 cores: 1 or 2)")
    parser.add_argument("--set", action="append", default=[], help="passed to rnnclf tune (repeatable)")
    parser.add_argument("--fasttext-python", default="/tmp/ftvenv/bin/python")
    parser.add_argument("--reference", type=Path, help="a hand-made config trained once on the same split")
    parser.add_argument("--reference-set", action="append", default=[], help="passed to its rnnclf train")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "rnnclf-tune-bench")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for corpus in BUDGETS if args.corpus == "all" else [args.corpus]:
        budget = args.budget or BUDGETS[corpus]
        config = write_config(corpus, args.out)
        cache_load = None
        runs = []
        files = fasttext_files(config, args.out) if args.fasttext_python else None
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            folder = args.out / f"{corpus}-{budget}-seed{seed}-{time.strftime('%H%M%S')}"
            summary = run_tune(config, budget, seed, folder, args.set, args.jobs)
            fasttext = run_fasttext(args.fasttext_python, files, seconds(budget), seed) if files else {}
            if summary is None:
                print(json.dumps({"seed": seed, "tune": "no best trial", "fasttext_autotune_test": fasttext}))
                continue
            cache_load = cache_load if cache_load is not None else cache_load_seconds(config)
            own = own_time(summary, cache_load)
            run = {
                "seed": seed,
                "budget_seconds": seconds(budget),
                "command_seconds": summary["command_seconds"],
                "trials": summary["trial_count"],
                "states": summary["states"],
                "best": summary["best"],
                "valid": summary["best"]["valid"],
                "baseline_valid": headline(summary.get("baseline_valid")),
                "test": headline(summary.get("test")),
                "own_seconds": own,
                "own_share": (own["around_trials"] + own["cache_loads"]) / seconds(budget),
                "fasttext_autotune_test": fasttext,
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
        linear_test = baseline_test(config)
        results[corpus] = {"runs": runs, "baseline_test": linear_test}
        if args.reference:
            where = args.out / f"{corpus}-reference-{time.strftime('%H%M%S')}"
            reference = reference_test(config, args.reference, args.reference_set, where)
            results[corpus]["reference_test"] = reference
            print(f"  {args.reference} on the same split: {reference}", flush=True)
        if not runs:
            continue
        keys = list(runs[0]["test"])
        print(f"\n{corpus}, --budget {budget}, {len(runs)} tune seeds (medians, min-max):")
        valid, trials = median([r["valid"] for r in runs]), median([r["trials"] for r in runs])
        print(f"  rnnclf tune: valid {valid}, trials {trials}")
        for key in keys:
            print(f"  rnnclf tune test {key}: {median([r['test'][key] for r in runs])}")
            print(
                f"  fastText autotune test {key}: "
                f"{median([r['fasttext_autotune_test'].get(key) for r in runs])}"
            )
        baseline = median([next(iter(r["baseline_valid"].values()), None) for r in runs])
        print(f"  linear baseline valid: {baseline}, test (scored once): {linear_test or '-'}")
        print(f"  tune's own time / budget: {median([r['own_share'] for r in runs])}")
    (args.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\nall numbers: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
