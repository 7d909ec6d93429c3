"""Load test of `rnnclf serve` (issue 27): questions/s, latency, errors, load shedding and memory.

    python bench/serve_load.py [--model RUN] [--imdb-model RUN] [--seconds 60]

Without --model it first trains the default config (`rnnclf init-config`) on ../shared/data/trec for 3
epochs. It measures the floor first (5 s): the model's scoring alone, in this process on one thread.
Then it starts `rnnclf serve` on a free port of 127.0.0.1 and, all bounded by --seconds:

1. closed loop: 32 clients, each sending 1-8 TREC test questions per request, the next as soon as the
   answer is in: questions/s, requests/s, p50/p99 latency, errors (any answer but 200);
2. open loop at 4x the questions/s of (1): requests are sent on a fixed schedule whether or not the
   earlier ones were answered: the share answered 503, the latency of the rest, the server's resident
   memory read every second (/proc/PID/status VmRSS), its start and peak;
3. with --imdb-model: 32 clients sending 1 IMDB test review each, then 1-8 each: reviews/s, and the
   server's mean batch (documents per scoring call, from /health); after the server stops, the floor
   of each: the IMDB model's scoring alone in this process (its own threads, no HTTP) on random batches
   of that mean size. --imdb-only skips 1 and 2.

The clients are a small asyncio HTTP/1.1 client (keep-alive, no library) in this process: on a 2-core
machine it shares the cores with the server, so its CPU time is reported beside the results.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TREC = ROOT.parent / "shared" / "data" / "trec"
IMDB = ROOT.parent / "shared" / "data" / "imdb"
WORK = Path(os.environ.get("RNNCLF_BENCH_DIR", "/tmp/rnnclf-serve-bench"))


def texts_of(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def default_model() -> Path:
    """The default config trained on TREC for 3 epochs (once; kept in $RNNCLF_BENCH_DIR)."""
    run = WORK / "trec-default"
    if (run / "best.pt").exists():
        return run
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / "default.yaml"
    config.write_text(subprocess.run(["rnnclf", "init-config"], capture_output=True, text=True).stdout)
    data = [f"data.train={TREC / 'train.csv.gz'}", f"data.test={TREC / 'test.csv.gz'}", "train.epochs=3"]
    command = ["rnnclf", "train", str(config), "--run-dir", str(run), "--quiet"]
    subprocess.run(command + [part for item in data for part in ("--set", item)], check=True)
    return run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(model: Path, port: int, *flags: str) -> subprocess.Popen:
    command = ["rnnclf", "serve", str(model), "--port", str(port), "--max-texts", "64", *flags]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if b" 200 " in probe.recv(1024):
                    return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("the server did not start")


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        """The answer's status; -1 for a transport error. A kept-alive connection the server has closed
        meanwhile (idle past uvicorn's keep-alive timeout) is retried once on a new one, as HTTP
        clients do (scoring is safe to repeat)."""
        reused = self.writer is not None
        status = await self._post(body)
        return await self._post(body) if status == -1 and reused else status

    async def _post(self, body: bytes) -> int:
        head = (
            "POST /predict HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(head.encode() + body)
            header = await self.reader.readuntil(b"\r\n\r\n")
            status = int(header[9:12])
            lines = header.decode("latin-1").lower().split("\r\n")
            length = next(int(line.split(":")[1]) for line in lines if line.startswith("content-length:"))
            await self.reader.readexactly(length)
            if "connection: close" in lines:
                self.close()
            return status
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
            self.close()
            return -1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def body_of(texts: list[str]) -> bytes:
    return json.dumps({"texts": texts}).encode()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def sample_memory(pid: int, into: list[float]) -> None:
    """The server's resident memory, every second, until cancelled."""
    while True:
        into.append(resident_mb(pid))
        await asyncio.sleep(1)


async def closed_loop(
    port: int, pool: list[str], seconds: float, clients: int, sizes: tuple[int, int], server: int
) -> dict:
    """`clients` clients each sending the next request as soon as the answer is in."""
    memory: list[float] = []
    sampler = asyncio.ensure_future(sample_memory(server, memory))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    documents = 0
    stop = time.perf_counter() + seconds
    generator = random.Random(0)

    async def client() -> None:
        nonlocal documents
        connection = Connection(port)
        while time.perf_counter() < stop:
            texts = generator.sample(pool, generator.randint(*sizes))
            started = time.perf_counter()
            status = await connection.post(body_of(texts))
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            documents += len(texts) if status == 200 else 0
        connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    sampler.cancel()
    return {
        "memory_mb": [round(value) for value in memory],
        "documents": documents,
        "documents_per_s": documents / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "statuses": statuses,
    }


async def open_loop(port: int, pool: list[str], seconds: float, rate: float, server: int) -> dict:
    """Requests (1-8 questions) sent every 1/rate seconds, answered or not (up to 400 connections)."""
    idle: list[Connection] = []
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    memory: list[float] = []
    not_sent = 0
    generator = random.Random(1)
    tasks: set[asyncio.Task] = set()

    async def one(texts: list[str]) -> None:
        connection = idle.pop() if idle else Connection(port)
        started = time.perf_counter()
        status = await connection.post(body_of(texts))
        if status == 200:
            latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(connection)

    sampler = asyncio.ensure_future(sample_memory(server, memory))
    began = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) < began + seconds:
        due = int((now - began) * rate) - sent
        for _ in range(due):
            sent += 1
            if len(tasks) >= 400:  # the client's own bound: counted, not sent
                not_sent += 1
                continue
            task = asyncio.ensure_future(one(generator.sample(pool, generator.randint(1, 8))))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - began
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    sampler.cancel()
    answered = sum(statuses.values())
    return {
        "scheduled_requests_per_s": sent / elapsed,
        "sent_requests_per_s": (sent - not_sent) / elapsed,
        "not_sent": not_sent,
        "statuses": statuses,
        "share_503": statuses.get(503, 0) / answered if answered else float("nan"),
        "p50_ms_200": percentile(latencies, 0.5) * 1000,
        "p99_ms_200": percentile(latencies, 0.99) * 1000,
        "memory_mb": [round(value) for value in memory],
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scoring_rate(predictor: Any, pool: list[str], batch: int, seconds: float, seed: int) -> float:
    """Documents/s of `predictor.predict` on random batches of `batch` documents from `pool` for
    `seconds`, the answers made plain dicts as the server does (no HTTP)."""
    generator = random.Random(seed)
    done, began = 0, time.perf_counter()
    while time.perf_counter() < began + seconds:
        texts = generator.sample(pool, batch)
        [prediction.to_dict() for prediction in predictor.predict(texts)]
        done += len(texts)
    return done / (time.perf_counter() - began)


def scoring_floor(model: Path, pool: list[str], seconds: float) -> float:
    """Questions/s of the model's scoring alone, in this process on one torch thread (what the server's
    scoring thread does, without HTTP): batches of 32 random questions, the answers as plain dicts."""
    import torch

    from rnnclf.inference.predict import Predictor
    from rnnclf.runs.rundir import resolve_checkpoint

    torch.set_num_threads(1)
    predictor = Predictor.from_checkpoint(resolve_checkpoint(str(model)))
    return scoring_rate(predictor, pool, 32, seconds, seed=2)


def imdb_floor(model: Path, pool: list[str], batch: int, seconds: float) -> float:
    """Reviews/s of the IMDB model's scoring alone (no HTTP), on random batches of `batch` reviews, as
    the server's scoring thread calls it (the ONNX predictor spreads a call over the cores itself)."""
    if model.suffix == ".onnx":
        from rnnclf.inference.onnx_predictor import OnnxPredictor

        predictor = OnnxPredictor(model)
    else:
        from rnnclf.inference.predict import Predictor
        from rnnclf.runs.rundir import resolve_checkpoint

        predictor = Predictor.from_checkpoint(resolve_checkpoint(str(model)))
    predictor.predict(random.Random(4).sample(pool, batch))  # warm-up
    return scoring_rate(predictor, pool, batch, seconds, seed=3)


def scoring_calls(port: int) -> int:
    """The server's scoring calls so far (GET /health)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
        return int(json.loads(answer.read())["batches"])


def serve_imdb(model: Path, seconds: float, clients: int, flags: list[str]) -> dict:
    """Closed loops of IMDB reviews (1 per request, then 1-8), each with the server's mean batch and,
    after the server stops, the floor at that batch."""
    reviews = texts_of(IMDB / "test.csv.gz")[:5000]
    results: dict = {}
    port = free_port()
    server = start_server(model, port, *flags)
    try:
        for name, sizes in (("imdb", (1, 1)), ("imdb_1_8", (1, 8))):
            asyncio.run(closed_loop(port, reviews, 2.0, clients, sizes, server.pid))  # warm-up
            calls = scoring_calls(port)
            result = asyncio.run(closed_loop(port, reviews, seconds / 2 - 2.0, clients, sizes, server.pid))
            made = scoring_calls(port) - calls
            result["mean_batch"] = result["documents"] / max(made, 1)
            results[name] = result
    finally:
        server.terminate()
        server.wait(timeout=60)
    for result in results.values():  # the server has stopped: the floor has the cores to itself
        result["floor_same_batch_per_s"] = imdb_floor(model, reviews, round(result["mean_batch"]), 5.0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="run folder or checkpoint (default: train one on TREC)")
    parser.add_argument("--imdb-model", type=Path, help="a model to serve IMDB reviews with")
    parser.add_argument("--seconds", type=float, default=60.0, help="the whole load test's bound")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--flags", default="", help="extra `rnnclf serve` flags, one string")
    parser.add_argument("--imdb-only", action="store_true", help="only the IMDB part (needs --imdb-model)")
    args = parser.parse_args()
    if args.imdb_only:
        if not args.imdb_model:
            parser.error("--imdb-only needs --imdb-model")
        results = serve_imdb(args.imdb_model, args.seconds, args.clients, args.flags.split())
        print(json.dumps(results, indent=1, default=lambda value: round(value, 2)))
        print_imdb(results)
        return
    model = args.model or default_model()
    questions = texts_of(TREC / "test.csv.gz")
    results_floor = scoring_floor(model, questions, 5.0)  # before the server starts: not competing
    share = (args.seconds - 5.0) / (3 if args.imdb_model else 2)  # warm-up + closed, open, (IMDB)
    port = free_port()
    server = start_server(model, port, *args.flags.split())
    results: dict = {"model": str(model), "cores": os.cpu_count(), "flags": args.flags}
    results["scoring_alone_questions_per_s"] = results_floor
    try:
        before = cpu_seconds()
        asyncio.run(closed_loop(port, questions, 2.0, args.clients, (1, 8), server.pid))  # warm-up
        memory_start = resident_mb(server.pid)
        results["load_average_before"] = os.getloadavg()[0]
        server_cpu, began = process_cpu(server.pid), time.perf_counter()
        closed = asyncio.run(closed_loop(port, questions, share - 2.0, args.clients, (1, 8), server.pid))
        closed["server_cores"] = (process_cpu(server.pid) - server_cpu) / (time.perf_counter() - began)
        closed["questions_per_server_cpu_second"] = closed["documents_per_s"] / closed["server_cores"]
        results["closed"] = closed
        results["client_cpu_share"] = (cpu_seconds() - before) / share
        rate = 4 * closed["requests_per_s"]
        results["open_4x"] = asyncio.run(open_loop(port, questions, share, rate, server.pid))
        results["open_4x"]["memory_start_mb"] = memory_start
        results["open_4x"]["memory_peak_mb"] = max(results["open_4x"]["memory_mb"])
        results["after_mb"] = resident_mb(server.pid)
        results["load_average_after"] = os.getloadavg()[0]
    finally:
        server.terminate()
        results["server_exit"] = server.wait(timeout=60)
    if args.imdb_model:
        results |= serve_imdb(args.imdb_model, share, args.clients, args.flags.split())
    print(json.dumps(results, indent=1, default=lambda value: round(value, 2)))
    closed, overload = results["closed"], results["open_4x"]
    print(
        f"\nclosed loop, {args.clients} clients: {closed['documents_per_s']:,.0f} questions/s "
        f"({closed['requests_per_s']:,.0f} requests/s), p50 {closed['p50_ms']:.1f} ms, "
        f"p99 {closed['p99_ms']:.1f} ms, answers {closed['statuses']}; the server used "
        f"{closed['server_cores']:.2f} cores ({closed['questions_per_server_cpu_second']:,.0f} questions per "
        f"CPU-second), the clients {results['client_cpu_share']:.2f}; load average "
        f"{results['load_average_before']:.1f}; floor, same run: the model's scoring alone on one thread "
        f"{results['scoring_alone_questions_per_s']:,.0f} questions/s\n"
        f"memory each second {closed['memory_mb']} MB\n"
        f"4x offered ({overload['scheduled_requests_per_s']:,.0f} requests/s scheduled, "
        f"{overload['sent_requests_per_s']:,.0f} sent): {overload['share_503']:.1%} answered 503, "
        f"p99 of the 200s "
        f"{overload['p99_ms_200']:.1f} ms, answers {overload['statuses']}; resident memory "
        f"{overload['memory_start_mb']:.0f} MB at the "
        f"start, peak {overload['memory_peak_mb']:.0f} MB, each second {overload['memory_mb']}, "
        f"{results['after_mb']:.0f} MB after; "
        f"server exit code {results['server_exit']}"
    )
    print_imdb(results)


def print_imdb(results: dict) -> None:
    for name, shape in (("imdb", "1 review"), ("imdb_1_8", "1-8 reviews")):
        if name in results:
            result = results[name]
            print(
                f"IMDB, {shape} a request: {result['documents_per_s']:,.0f} reviews/s, p99 "
                f"{result['p99_ms']:.0f} ms, answers {result['statuses']}, mean batch "
                f"{result['mean_batch']:.1f}; floor, same run: scoring alone on batches of that size "
                f"{result['floor_same_batch_per_s']:,.0f} reviews/s"
            )


if __name__ == "__main__":
    sys.exit(main())
