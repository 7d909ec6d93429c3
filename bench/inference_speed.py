#!/usr/bin/env python3
"""Inference speed: `rnnclf eval` over a labelled file (documents/s) and `rnnclf predict "text"` from a
cold shell (seconds), each the median of --repeats runs of the real command in a fresh process.

Baseline for eval, measured in the same run: the same model scoring one document at a time (what a
naive loop over `model(text)` does), over the first --baseline-documents documents. Also prints the
size of the checkpoint that --model resolves to (a run folder's best.pt), which the cold predict reads.

Floors, same run: `import torch` alone in a fresh process (what any cold predict pays), and the
model's scoring alone (scoring.logits_for over the already-encoded file, in this process: what eval
could reach if reading, tokenizing and start-up cost nothing). With --lines FILE (one short document a
line) and --lines-model RUN, it also times `rnnclf predict --file -` streaming FILE through stdin.

    python bench/inference_speed.py --model runs/imdb --data ../shared/data/imdb/test.csv.gz --repeats 3

--backends torch,onnx,int8 (issue 27) measures instead, in one run, rounds interleaved so a busy
machine disturbs each backend alike: `rnnclf eval` with the torch path, the fp32 ONNX export
(RUN/model.onnx) and the int8 one (RUN/model.int8.onnx), each exported first if missing (not timed);
cold `rnnclf predict "text"` on torch and on ONNX; the floors `python -c pass`, `import onnxruntime`,
`import torch`; and where the cold ONNX predict's imports go (python -X importtime, largest first).

    python bench/inference_speed.py --model RUN --data ../shared/data/imdb/test.csv.gz \
        --backends torch,onnx,int8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from rnnclf.runs.rundir import resolve_checkpoint


def run(command: list[str], stdin: str | None = None) -> tuple[float, str]:
    """(seconds, stdout) of a command in a fresh process."""
    started = time.perf_counter()
    with open(stdin or "/dev/null", "rb") as source:
        result = subprocess.run(command, stdin=source, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return time.perf_counter() - started, result.stdout


def timed(command: list[str], stdin: str | None = None) -> float:
    return run(command, stdin)[0]


def scoring_alone(model: str, data: str) -> tuple[int, float]:
    """(documents, documents/s) of scoring.logits_for alone over the encoded file (in this process)."""
    from rnnclf.data import read_examples
    from rnnclf.inference.predict import Predictor
    from rnnclf.inference.scoring import logits_for

    predictor = Predictor.from_checkpoint(resolve_checkpoint(model))
    config = predictor.config.data
    encoded = predictor.encode(
        read_examples(data, config.format, config.text_column, config.label_column).texts
    )
    started = time.perf_counter()
    logits_for(predictor.model, encoded, predictor.device, predictor.precision)
    return len(encoded), len(encoded) / (time.perf_counter() - started)


def onnx_scoring_alone(model: str, data: str, repeats: int) -> list[float]:
    """Documents/s of an ONNX model's session runs alone (encoded once beforehand, the predictor's
    batches and threads): the floor of the ONNX eval path, tokenizing, reading and start-up excluded."""
    from rnnclf.data.documents import labelled_to_score
    from rnnclf.inference.onnx_predictor import OnnxPredictor

    predictor = OnnxPredictor(model)
    ids, lengths = predictor.encode(labelled_to_score(data, predictor.config.data).texts)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.scores(ids, lengths)
        rates.append(len(lengths) / (time.perf_counter() - started))
    return rates


def summary(times: list[float], digits: int = 2) -> str:
    return f"median {statistics.median(times):.{digits}f} s ({', '.join(f'{t:.{digits}f}' for t in times)})"


def one_at_a_time(model: str, data: str, documents: int) -> float:
    """Documents/s when each document is scored alone (batch of one)."""
    from rnnclf.data import read_examples
    from rnnclf.inference.predict import Predictor

    predictor = Predictor.from_checkpoint(resolve_checkpoint(model))
    config = predictor.config.data
    texts = read_examples(data, config.format, config.text_column, config.label_column).texts[:documents]
    started = time.perf_counter()
    for text in texts:
        predictor.probabilities([text])
    return len(texts) / (time.perf_counter() - started)


def ensure_exports(model: str) -> dict[str, str]:
    """--model argument per backend: the run for torch and onnx (its current model.onnx), the int8 file."""
    from rnnclf.inference.backends import current
    from rnnclf.inference.export import export_model
    from rnnclf.inference.onnx_predictor import INT8_FILE, ONNX_FILE

    checkpoint = resolve_checkpoint(model)
    folder = checkpoint.parent
    if not current(folder / ONNX_FILE, checkpoint):
        export_model(checkpoint, "onnx")
    if not current(folder / INT8_FILE, checkpoint):
        export_model(checkpoint, "onnx", quantize="int8")
    return {"torch": str(folder), "onnx": str(folder), "int8": str(folder / INT8_FILE)}


def import_costs(command: list[str], top: int = 12) -> list[tuple[int, str]]:
    """(microseconds, module) of the largest top-level imports of `command` (python -X importtime)."""
    done = subprocess.run(command, capture_output=True, text=True)
    costs = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):  # top level: one leading space
            costs.append((int(cumulative), name.strip()))
    return sorted(costs, reverse=True)[:top]


def backends(args: argparse.Namespace) -> None:
    """torch vs fp32 ONNX vs int8 ONNX, interleaved rounds, medians and ratios from the same run."""
    rnnclf = [sys.executable, "-m", "rnnclf"]
    models = ensure_exports(args.model)
    chosen = args.backends.split(",")
    folder = resolve_checkpoint(args.model).parent
    for name in ("best.pt", "model.onnx", "model.int8.onnx"):
        print(f"{name}: {(folder / name).stat().st_size / 1e6:,.1f} MB")
    times: dict[str, list[float]] = {name: [] for name in chosen}
    reports: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name in chosen:
            backend = "onnx" if name == "int8" else name
            command = [*rnnclf, "eval", "--model", models[name], "--backend", backend, "--data", args.data]
            seconds, out = run([*command, "--json"])
            times[name].append(seconds)
            reports[name] = json.loads(out)
    rates = {name: reports[name]["n"] / statistics.median(times[name]) for name in chosen}
    print(f"rnnclf eval over {args.data}, whole command, median of {args.repeats}:")
    for name in chosen:
        ratio = f", {rates[name] / rates['torch']:.2f}x torch" if "torch" in rates else ""
        print(
            f"  {name:5s} {rates[name]:7,.0f} documents/s ({', '.join(f'{t:.1f}' for t in times[name])} s)"
            f"{ratio}, accuracy {reports[name]['accuracy']:.4f}"
        )
    files = {"onnx": str(folder / "model.onnx"), "int8": models["int8"]}
    for name in (name for name in chosen if name != "torch"):
        alone = statistics.median(onnx_scoring_alone(files[name], args.data, args.repeats))
        ratio = f", {alone / rates['torch']:.2f}x torch's eval" if "torch" in rates else ""
        print(f"  floor, {name} session runs alone (encoded beforehand): {alone:7,.0f} documents/s{ratio}")
    text = "An honest, funny and moving film; the best I have seen this year."
    cold: dict[str, list[float]] = {"onnx": [], "torch": []}
    floors: dict[str, list[float]] = {"python -c pass": [], "import onnxruntime": [], "import torch": []}
    codes = {
        "python -c pass": "pass",
        "import onnxruntime": "import onnxruntime",
        "import torch": "import torch",
    }
    for _ in range(max(args.repeats, 5)):
        for backend in cold:
            cold[backend].append(
                timed([*rnnclf, "predict", "--model", models[backend], "--backend", backend, text])
            )
        for name, code in codes.items():
            floors[name].append(timed([sys.executable, "-c", code]))
    print('cold `rnnclf predict "text"`, fresh process:')
    for backend, values in cold.items():
        print(f"  {backend:5s} {summary(values)}")
    ratio = statistics.median(cold["torch"]) / statistics.median(cold["onnx"])
    print(f"  onnx is {ratio:.1f}x faster than torch")
    for name, values in floors.items():
        print(f"  floor, {name}: {summary(values)}")
    print("where the cold ONNX predict's imports go (python -X importtime, top level, cumulative):")
    command = [sys.executable, "-X", "importtime", "-m", "rnnclf", "predict", "--model", models["onnx"]]
    for microseconds, module in import_costs([*command, "--backend", "onnx", text]):
        print(f"  {microseconds / 1000:6.0f} ms  {module}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder or checkpoint")
    parser.add_argument("--data", required=True, help="labelled data file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-documents", type=int, default=1000)
    parser.add_argument("--lines", help="one short document a line, for the streaming predict")
    parser.add_argument("--lines-model", help="run folder or checkpoint for --lines (default: --model)")
    parser.add_argument("--backends", help="e.g. torch,onnx,int8: compare scoring backends (see above)")
    args = parser.parse_args()
    if args.backends:
        backends(args)
        return
    rnnclf = [sys.executable, "-m", "rnnclf"]
    path = resolve_checkpoint(args.model)
    print(f"checkpoint {path}: {path.stat().st_size / 1e6:,.1f} MB")

    evals = [
        run([*rnnclf, "eval", "--model", args.model, "--data", args.data, "--json"])
        for _ in range(args.repeats)
    ]
    times = [seconds for seconds, _ in evals]
    report = json.loads(evals[-1][1])
    count = report["n"]
    rate = count / statistics.median(times)
    print(
        f"rnnclf eval: {count:,} documents, median {statistics.median(times):.1f} s "
        f"({', '.join(f'{t:.1f}' for t in times)}) = {rate:,.0f} documents/s "
        f"(whole command: start-up, reading, tokenizing, scoring), accuracy {report['accuracy']:.4f}"
    )
    baseline = one_at_a_time(args.model, args.data, args.baseline_documents)
    print(f"baseline, one document at a time: {baseline:,.0f} documents/s; ratio {rate / baseline:.1f}x")

    count, alone = scoring_alone(args.model, args.data)
    print(f"floor: the model's scoring alone, {count:,} encoded documents: {alone:,.0f} documents/s")

    text = "An honest, funny and moving film; the best I have seen this year."
    cold = [timed([*rnnclf, "predict", "--model", args.model, text]) for _ in range(max(args.repeats, 5))]
    print(f"rnnclf predict from a cold shell: {summary(cold)}")
    torch_alone = [timed([sys.executable, "-c", "import torch"]) for _ in range(max(args.repeats, 5))]
    print(f"floor: python -c 'import torch' from a cold shell: {summary(torch_alone)}")

    if args.lines:
        with open(args.lines, "rb") as file:
            lines = sum(1 for _ in file)
        command = [*rnnclf, "predict", "--model", args.lines_model or args.model, "--file", "-"]
        stream = [timed(command, stdin=args.lines) for _ in range(args.repeats)]
        rate = lines / statistics.median(stream)
        print(f"rnnclf predict --file - < {args.lines}: {lines:,} lines, {summary(stream)}: {rate:,.0f}/s")


if __name__ == "__main__":
    main()
