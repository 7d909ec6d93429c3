"""rnnclf serve: the real server process on a free port of 127.0.0.1, talked to with httpx.

Checked: predictions equal `rnnclf predict --json`'s; /health, /model, /openapi.json and /docs; every
bad request gets a one-line 4xx JSON error naming its field and leaves the server answering; concurrent
clients get correct answers, scored in shared batches; a full queue answers 503; SIGTERM and Ctrl-C
let the request in flight finish and exit 0. The dynamic batcher is also tested on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from typer.testing import CliRunner  # noqa: E402

from rnnclf.cli.app import app  # noqa: E402
from rnnclf.inference.batcher import Batcher, Overloaded, trimmed  # noqa: E402

TEXTS = ["pizza and pasta with cheese", "the coach of the team", "my laptop runs software", "", "Pâté ?"]
START_SECONDS = 60  # the server imports torch and loads the model first (slow on a busy machine)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`rnnclf serve` in its own process (PYTHONPATH inherited), stderr kept in a file."""

    def __init__(self, run: Path, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "rnnclf", "serve", str(run), "--port", str(self.port), *flags]
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server did not answer within {START_SECONDS} s: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def predict(self, body: object, **options: object) -> httpx.Response:
        return httpx.post(self.url + "/predict", json=body, timeout=30, **options)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that only ask it questions; small limits so they are easy to pass."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    running = Server(tiny_run, log, "--max-texts", "20", "--max-body", "4000", "--max-wait-ms", "20")
    yield running
    running.stop()


def predict_json(run: Path, texts: list[str], *flags: str) -> list[dict]:
    """What `rnnclf predict --json` prints for the texts, one record per text."""
    done = subprocess.run(
        [sys.executable, "-m", "rnnclf", "predict", *texts, "--model", str(run), "--json", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def assert_same_predictions(served: list[dict], expected: list[dict]) -> None:
    assert len(served) == len(expected)
    for got, want in zip(served, expected, strict=True):
        assert got["text"] == want["text"] and got["label"] == want["label"]
        assert list(got["probabilities"]) == list(want["probabilities"])  # same labels, same order
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)


# --- answers ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_predictions_equal_the_predict_commands_json(server: Server, tiny_run: Path) -> None:
    answer = server.predict({"texts": TEXTS})
    assert answer.status_code == 200, answer.text
    assert_same_predictions(answer.json()["predictions"], predict_json(tiny_run, TEXTS))
    answer = server.predict({"texts": TEXTS, "top_k": 2})
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    assert all(len(record["probabilities"]) == 2 for record in served)
    assert_same_predictions(served, predict_json(tiny_run, TEXTS, "--top-k", "2"))


@pytest.mark.slow
def test_health_model_and_the_api_description(server: Server, tiny_run: Path) -> None:
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    model = httpx.get(server.url + "/model").json()
    assert model["labels"] == ["food", "sports", "tech"]
    assert model["backend"] == "torch" and model["format_version"] == 2
    assert model["model"] == str(tiny_run / "best.pt")
    assert model["summary"] == "lstm 1x16 bi, max"
    test_scores = json.loads((tiny_run / "metrics.json").read_text())["test"]
    assert model["metrics"]["test"]["accuracy"] == test_scores["accuracy"]
    schema = httpx.get(server.url + "/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {"/predict", "/health", "/model"}
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "texts" in body["schema"]["properties"]
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "POST /predict" in docs.text


@pytest.mark.slow
def test_explain_adds_the_words_that_pushed_the_prediction(server: Server) -> None:
    answer = server.predict({"texts": ["pizza and pasta with cheese"], "explain": True})
    assert answer.status_code == 200, answer.text
    record = answer.json()["predictions"][0]
    assert record["label"] == "food"
    explanation = record["explanation"]
    assert explanation["label"] == "food" and explanation["method"] == "occlusion"
    assert {entry["token"] for entry in explanation["top"][:2]} <= {"pizza", "pasta", "cheese"}


# --- bad requests -------------------------------------------------------------------------------------

JSON = {"Content-Type": "application/json"}
BAD_REQUESTS = [
    # (name, body bytes, headers, status, field)
    ("invalid JSON", b'{"texts": [', JSON, 400, "body"),
    ("not UTF-8", b'{"texts": ["\xff"]}', JSON, 400, "body"),
    ("not an object", b'["a"]', JSON, 400, "body"),
    ("nested too deeply", b"[" * 3000, JSON, 400, "body"),
    ("missing texts", b'{"text": ["a"]}', JSON, 400, "text"),
    ("no texts at all", b"{}", JSON, 400, "texts"),
    ("texts a string", b'{"texts": "a"}', JSON, 400, "texts"),
    ("texts null", b'{"texts": null}', JSON, 400, "texts"),
    ("empty list", b'{"texts": []}', JSON, 400, "texts"),
    ("a number among texts", b'{"texts": ["a", 3]}', JSON, 400, "texts[1]"),
    ("a lone surrogate", b'{"texts": ["a", "\\ud800"]}', JSON, 400, "texts[1]"),
    ("top_k zero", b'{"texts": ["a"], "top_k": 0}', JSON, 400, "top_k"),
    ("top_k a string", b'{"texts": ["a"], "top_k": "2"}', JSON, 400, "top_k"),
    ("explain a string", b'{"texts": ["a"], "explain": "yes"}', JSON, 400, "explain"),
    ("too many texts", json.dumps({"texts": ["a"] * 21}).encode(), JSON, 413, "texts"),
    ("body over the limit", json.dumps({"texts": ["a" * 5000]}).encode(), JSON, 413, "body"),
    ("wrong content type", b'{"texts": ["a"]}', {"Content-Type": "text/plain"}, 415, "Content-Type"),
    ("no content type", b'{"texts": ["a"]}', {}, 415, "Content-Type"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("body", "headers", "status", "field"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])  # fmt: skip
def test_a_bad_request_gets_one_line_naming_its_field(
    server: Server, body: bytes, headers: dict, status: int, field: str
) -> None:
    answer = httpx.post(server.url + "/predict", content=body, headers=headers, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert "\n" not in answer.text
    error = answer.json()
    assert error["field"] == field and error["error"].startswith(f"{field}: ")
    assert server.predict({"texts": ["pizza"]}).status_code == 200  # still answering


@pytest.mark.slow
def test_a_streamed_body_is_cut_off_at_the_limit(server: Server) -> None:
    """No Content-Length (chunked): the server counts what arrives and refuses past --max-body."""
    sent = []

    def pieces() -> Iterator[bytes]:
        yield b'{"texts": ["'
        for _ in range(200):  # 200 x 1000 bytes: 50 x the limit
            sent.append(1000)
            yield b"a" * 1000
        yield b'"]}'

    answer = httpx.post(server.url + "/predict", content=pieces(), headers=JSON, timeout=30)
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    assert server.predict({"texts": ["pizza"]}).status_code == 200


@pytest.mark.slow
def test_unknown_endpoints_and_methods_are_json_errors(server: Server) -> None:
    missing = httpx.get(server.url + "/nowhere")
    assert missing.status_code == 404 and "/nowhere" in missing.json()["error"]
    wrong = httpx.get(server.url + "/predict")
    assert wrong.status_code == 405 and "GET" in wrong.json()["error"]


# --- load ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_clients_get_their_own_answers_from_shared_batches(server: Server, tiny_run: Path) -> None:
    expected = {record["text"]: record for record in predict_json(tiny_run, TEXTS)}
    batches_before = httpx.get(server.url + "/health").json()["batches"]
    requests = [[TEXTS[(client + i) % len(TEXTS)] for i in range(1 + client % 5)] for client in range(64)]

    def ask(texts: list[str]) -> list[dict]:
        answer = server.predict({"texts": texts})
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"]

    with ThreadPoolExecutor(16) as clients:
        answers = list(clients.map(ask, requests, timeout=120))
    for texts, served in zip(requests, answers, strict=True):
        assert_same_predictions(served, [expected[text] for text in texts])
    batches = httpx.get(server.url + "/health").json()["batches"] - batches_before
    assert 0 < batches < len(requests)  # requests that arrived together were scored together


@pytest.mark.slow
def test_a_full_queue_answers_503_and_the_server_recovers(tiny_run: Path, tmp_path: Path) -> None:
    long_text = " ".join(["pizza pasta cheese the of and"] * 60)  # ~360 tokens: slow to score
    server = Server(tiny_run, tmp_path / "server.log", "--max-queue", "8", "--max-batch", "4")
    try:
        with ThreadPoolExecutor(32) as clients:
            answers = list(clients.map(lambda _: server.predict({"texts": [long_text] * 4}), range(64)))
        statuses = [answer.status_code for answer in answers]
        assert set(statuses) == {200, 503}, statuses
        refused = next(answer for answer in answers if answer.status_code == 503)
        assert refused.headers["retry-after"] == "1" and "overloaded" in refused.json()["error"]
        assert server.predict({"texts": ["pizza"]}).status_code == 200
    finally:
        server.stop()


# --- stopping -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_finishes_the_request_in_flight_then_exits_0(
    tiny_run: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    # The batcher holds a lone request 2 s for company: the signal certainly arrives while it is in flight.
    server = Server(tiny_run, tmp_path / "server.log", "--max-wait-ms", "2000")
    try:
        result: dict = {}
        client = threading.Thread(target=lambda: result.update(answer=server.predict({"texts": ["pizza"]})))
        client.start()
        deadline = time.monotonic() + 10
        while httpx.get(server.url + "/health").json()["queued"] == 0:  # wait until it is queued
            assert time.monotonic() < deadline, "the request never reached the queue"
            time.sleep(0.02)
        os.kill(server.process.pid, stop)
        client.join(timeout=30)
        assert result["answer"].status_code == 200
        assert result["answer"].json()["predictions"][0]["label"] == "food"
        assert server.process.wait(timeout=30) == 0, server.output()
        assert "Finished server process" in server.output()
        with pytest.raises(httpx.TransportError):  # no longer listening
            httpx.get(server.url + "/health", timeout=2)
    finally:
        server.stop()


@pytest.mark.slow
def test_several_workers_answer_and_stop_with_exit_0(tiny_run: Path, tmp_path: Path) -> None:
    server = Server(tiny_run, tmp_path / "server.log", "--workers", "2")
    try:
        with ThreadPoolExecutor(4) as clients:
            answers = list(clients.map(lambda _: server.predict({"texts": ["pizza", "goal"]}), range(8)))
        assert all(answer.status_code == 200 for answer in answers)
        assert {tuple(r["label"] for r in a.json()["predictions"]) for a in answers} == {("food", "sports")}
        os.kill(server.process.pid, signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.output()
        assert server.output().count("Application startup complete") == 2
        assert "Serving " in server.output()
    finally:
        server.stop()


# --- starting -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "--max-batch 0: must be at least 1"),
        (["--backend", "tf"], "--backend tf: expected one of torch, onnx"),
        (["--port", "70000"], "--port 70000: expected 1-65535"),
        (["no-such-run"], "no-such-run: no such run folder or checkpoint"),
    ],
)
def test_bad_flags_are_one_line_errors(flags: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["serve", *flags])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}"


@pytest.mark.slow
def test_the_onnx_backend_serves_what_predict_answers(tiny_run: Path, tmp_path: Path) -> None:
    """--backend onnx serves the run's exported model (ONNX Runtime): the same answers as `rnnclf predict`
    with torch, within 1e-5, and /model names the backend."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    exported = CliRunner().invoke(app, ["export", "--model", str(run), "--format", "onnx"])
    assert exported.exit_code == 0, exported.output
    server = Server(run, tmp_path / "server.log", "--backend", "onnx")
    try:
        answer = server.predict({"texts": TEXTS, "top_k": 2})
        assert answer.status_code == 200, answer.text
        expected = predict_json(run, TEXTS, "--top-k", "2", "--backend", "torch")
        for got, want in zip(answer.json()["predictions"], expected, strict=True):
            assert got["label"] == want["label"] and list(got["probabilities"]) == list(want["probabilities"])
            assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
        assert httpx.get(server.url + "/model", timeout=10).json()["backend"] == "onnx"
    finally:
        server.stop()


def test_a_taken_port_is_a_one_line_error(tiny_run: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(tiny_run), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: --host 127.0.0.1 --port {port}: cannot listen there")


# --- the batcher alone --------------------------------------------------------------------------------


def test_trimmed_matches_the_predictors_top_k(tiny_run: Path) -> None:
    from rnnclf.inference.predict import Predictor

    predictor = Predictor.from_checkpoint(tiny_run / "best.pt")
    everything = [p.to_dict() for p in predictor.predict(TEXTS)]
    for k in (1, 2, 3, 5):
        assert [trimmed(record, k) for record in everything] == [
            p.to_dict() for p in predictor.predict(TEXTS, top_k=k)
        ]
    multi = {"text": "x", "labels": ["a", "b", "c"], "probabilities": {"a": 0.9, "b": 0.8, "c": 0.7}}
    assert trimmed(multi, 2) == {**multi, "labels": ["a", "b"]}


def _echo(calls: list[list[str]]):
    def score(texts: list[str]) -> list[dict]:
        calls.append(list(texts))
        return [{"text": t, "label": t.upper(), "probabilities": {t.upper(): 1.0, "x": 0.0}} for t in texts]

    return score


def test_requests_arriving_together_are_scored_in_one_call_and_answered_apart() -> None:
    calls: list[list[str]] = []

    async def scenario() -> list[list[dict]]:
        batcher = Batcher(_echo(calls), max_batch=100, max_wait=0.05, max_queue=100)
        batcher.start()
        answers = await asyncio.gather(
            batcher.submit(["a", "b"], None), batcher.submit(["c"], 1), batcher.submit(["d", "e", "f"], None)
        )
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert calls == [["a", "b", "c", "d", "e", "f"]]
    assert [[record["label"] for record in answer] for answer in answers] == [
        ["A", "B"],
        ["C"],
        ["D", "E", "F"],
    ]
    assert answers[1][0]["probabilities"] == {"C": 1.0}  # its own top_k


def test_max_batch_splits_calls_and_a_full_queue_refuses() -> None:
    calls: list[list[str]] = []

    async def scenario() -> tuple[list, bool]:
        batcher = Batcher(_echo(calls), max_batch=3, max_wait=0.05, max_queue=5)
        first = [asyncio.ensure_future(batcher.submit([f"{i}a", f"{i}b"], None)) for i in range(2)]
        await asyncio.sleep(0)  # let both requests join the queue
        refused = False
        try:
            await batcher.submit(["x", "y"], None)  # 4 waiting + 2 > 5
        except Overloaded:
            refused = True
        batcher.start()
        answers = await asyncio.gather(*first)
        await batcher.stop()
        return answers, refused

    answers, refused = asyncio.run(scenario())
    assert refused
    assert calls == [["0a", "0b"], ["1a", "1b"]]  # 2 + 2 > max_batch 3: two calls
    assert [len(answer) for answer in answers] == [2, 2]
