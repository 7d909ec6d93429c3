"""`rnnclf serve`: a trained model behind HTTP, as a Starlette app run by uvicorn.

    POST /predict   {"texts": [...], "top_k": K, "explain": false} -> {"predictions": [...]}, each
                    prediction the object `rnnclf predict --json` prints for that text
    GET  /health    {"status": "ok", ...}: the model is loaded and the server answers
    GET  /model     labels, config summary, metrics, format version, backend
    GET  /openapi.json, GET /docs   the API's description (OpenAPI 3) and a page showing it

Requests are scored in dynamic batches on a scoring thread (rnnclf.inference.batcher), so the event loop
stays free to read and answer requests. Every limit is enforced as the request is read: the declared
and the actual body size (the body is read in pieces and refused as soon as it passes the limit), the
number of texts, the queue (a full queue answers 503 at once), the number of open connections (uvicorn
answers 503 past it). A bad request gets a 4xx answer `{"error": "<field>: <what is wrong>", "field":
...}` on one line. SIGTERM or Ctrl-C: uvicorn stops accepting, the requests in flight finish, exit 0.

Nothing here imports torch unless the torch backend is chosen, so an ONNX server stays torch-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.config
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from rnnclf.errors import MissingExtra, RnnclfError

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
    from starlette.schemas import SchemaGenerator
except ImportError as missing:  # the serve extra is optional
    raise MissingExtra("rnnclf serve", missing.name or "starlette and uvicorn", "serve") from None

from rnnclf.inference.batcher import Batcher, Overloaded

BACKENDS = ("torch", "onnx")
SETTINGS_VARIABLE = "RNNCLF_SERVE_SETTINGS"  # how --workers N processes learn the settings
EXPLAIN_TEXTS = 16  # texts per request with "explain": true (each costs ~its length in extra documents)
BODY_SECONDS = 30.0  # a request body must arrive within this (a client trickling bytes holds a slot)


@dataclass
class ServeSettings:
    """Everything `rnnclf serve` takes; plain types, so --workers processes get it as JSON."""

    model: str | None = None  # run folder, checkpoint or exported model; None: the latest run here
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "torch"
    workers: int = 1
    max_batch: int = 128  # documents scored in one call
    max_wait_ms: float = 2.0  # longest wait for more requests to join a batch
    max_queue: int = 256  # documents waiting to be scored; past it: 503 (32 clients x 8 texts fit)
    max_texts: int = 256  # texts in one request; past it: 413
    max_body: int = 1_048_576  # bytes of one request body (1 MiB); past it: 413
    max_connections: int = 256  # open connections; past it uvicorn answers 503
    access_log: bool = False
    graceful_seconds: int = 30  # in-flight requests still running this long after SIGTERM are cut

    def check(self) -> None:
        """Each impossible value as a one-line error naming its flag."""
        if self.backend not in BACKENDS:
            raise RnnclfError(f"--backend {self.backend}: expected one of {', '.join(BACKENDS)}")
        if not 1 <= self.port <= 65535:
            raise RnnclfError(f"--port {self.port}: expected 1-65535")
        for flag, value in (
            ("--workers", self.workers),
            ("--max-batch", self.max_batch),
            ("--max-queue", self.max_queue),
            ("--max-texts", self.max_texts),
            ("--max-body", self.max_body),
            ("--max-connections", self.max_connections),
        ):
            if value < 1:
                raise RnnclfError(f"{flag} {value}: must be at least 1")
        if self.max_wait_ms < 0:
            raise RnnclfError(f"--max-wait-ms {self.max_wait_ms}: must be 0 or more")


class Scorer(Protocol):
    """What the server calls on a predictor (rnnclf.inference.predict.Predictor, or the ONNX Runtime
    predictor of rnnclf.inference.backends): label names, and predictions whose to_dict() is the
    `predict --json` record."""

    labels: list[str]

    def predict(self, texts: list[str], top_k: int | None = None) -> list[Any]: ...


# --- the model ----------------------------------------------------------------------------------------


def model_path(settings: ServeSettings) -> Path:
    """RUN_OR_MODEL as a file: torch, a run's best.pt (or the checkpoint named); onnx, as given (the
    ONNX loader finds the exported model in a run folder itself)."""
    from rnnclf.runs.rundir import latest_run, resolve_checkpoint

    if settings.backend == "torch":
        return resolve_checkpoint(settings.model)
    path = Path(settings.model) if settings.model else latest_run()
    if not path.exists():
        raise RnnclfError(f"{path}: no such run folder or model file")
    return path


def load_scorer(path: Path, backend: str, workers: int = 1) -> Scorer:
    """The predictor for `backend`; torch gets the cores this process may use, less one for the event
    loop (under load the event loop used about half the CPU time of the scoring thread, TREC model)."""
    if backend == "onnx":
        from rnnclf.inference.backends import load_predictor  # its errors name the extra and the export

        return load_predictor(path, backend="onnx")
    # oneDNN (torch's CPU LSTM) caches a compiled kernel per input shape, up to 1,024 of them: a server
    # sees many batch shapes, and its memory grew ~100 MB over the first minute of load before levelling
    # off. 64 kept it within ~15 MB of the start at no measured cost in speed (BENCHMARKS.md, Serving).
    # oneDNN reads it when it first builds a kernel: setting it after `import torch` still works.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    import torch

    from rnnclf.inference.predict import Predictor
    from rnnclf.runtime import cpu_count

    torch.set_num_threads(max(1, cpu_count() // workers - 1))
    return Predictor.from_checkpoint(path)


def describe(scorer: Scorer, path: Path, backend: str) -> dict[str, Any]:
    """GET /model: what is being served."""
    from rnnclf.runs import rundir
    from rnnclf.runs.info import model_summary

    config = getattr(scorer, "config", None)
    if hasattr(config, "to_dict"):  # torch: the run's Config
        config_dict = config.to_dict()
    else:  # ONNX Runtime: the export's JSON (its data and text settings, and the config when recorded)
        meta = getattr(scorer, "metadata", None) or {}
        config_dict = meta.get("config") or {
            section: dict(vars(getattr(config, section))) for section in ("data", "text") if config
        }
    state = getattr(scorer, "state", None) or {}
    folder = path if path.is_dir() else path.parent
    metrics = rundir.read_metrics(folder) or {}
    return {
        "model": str(path),
        "backend": backend,
        "format_version": state.get("format_version", getattr(scorer, "format_version", None)),
        "rnnclf_version": state.get("rnnclf_version"),
        "labels": list(scorer.labels),
        "multi_label": bool(getattr(scorer, "multi_label", False)),
        "summary": model_summary(config_dict) if config_dict else None,
        "text": config_dict.get("text"),
        "metrics": {split: metrics[split] for split in ("valid", "test") if split in metrics}
        | ({"best_epoch": metrics["best_epoch"]} if "best_epoch" in metrics else {}),
    }


# --- requests -----------------------------------------------------------------------------------------


class BadRequest(Exception):
    """A request the server refuses: HTTP status, the field at fault and what is wrong with it."""

    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def refusal(status: int, field: str | None, message: str, headers: dict[str, str] | None = None) -> Response:
    """A one-line JSON error: {"error": "<field>: <message>", "field": field}."""
    text = f"{field}: {message}" if field else message
    return JSONResponse({"error": " ".join(text.split()), "field": field}, status, headers=headers)


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}
    return "null" if value is None else names.get(type(value), "an object")


def _shown(value: Any) -> str:
    """A value as JSON, cut to 40 characters (an error line stays short)."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is declared or read past `limit` bytes: a huge body is
    never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, "body", f"{int(declared)} bytes is over the limit of {limit} (--max-body)")
    pieces, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise BadRequest(413, "body", f"over the limit of {limit} bytes (--max-body)")
        pieces.append(piece)
    return b"".join(pieces)


def parse_request(body: bytes, max_texts: int) -> tuple[list[str], int | None, bool]:
    """A /predict body -> (texts, top_k, explain), or BadRequest naming the field."""
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest(400, "body", "not UTF-8 text") from None
    except RecursionError:  # [[[[...]]]]: Python's parser gives up past ~1,000 levels
        raise BadRequest(400, "body", "JSON nested too deeply") from None
    except json.JSONDecodeError as err:
        raise BadRequest(
            400, "body", f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    if not isinstance(document, dict):
        raise BadRequest(
            400, "body", f'expected a JSON object {{"texts": [...]}}, got {_type_name(document)}'
        )
    unknown = sorted(set(document) - {"texts", "top_k", "explain"})
    if unknown:
        raise BadRequest(400, unknown[0], "unknown field; expected texts, top_k, explain")
    if "texts" not in document:
        raise BadRequest(400, "texts", "missing; expected a list of strings")
    texts = document["texts"]
    if not isinstance(texts, list):
        raise BadRequest(400, "texts", f"expected a list of strings, got {_type_name(texts)}")
    if not texts:
        raise BadRequest(400, "texts", "empty list; give at least one text")
    if len(texts) > max_texts:
        raise BadRequest(413, "texts", f"{len(texts)} texts is over the limit of {max_texts} (--max-texts)")
    for number, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(400, f"texts[{number}]", f"expected a string, got {_type_name(text)}")
        try:  # JSON allows "\ud800" (half of a UTF-16 pair), which no answer could be written with
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(
                400, f"texts[{number}]", "not valid Unicode (a lone surrogate \\uXXXX)"
            ) from None
    top_k = document.get("top_k")
    if top_k is not None and (type(top_k) is not int or top_k < 1):
        raise BadRequest(400, "top_k", f"expected a whole number of at least 1, got {_shown(top_k)}")
    explain = document.get("explain", False)
    if not isinstance(explain, bool):
        raise BadRequest(400, "explain", f"expected true or false, got {_shown(explain)}")
    if explain and len(texts) > EXPLAIN_TEXTS:
        raise BadRequest(413, "texts", f"{len(texts)} texts to explain is over the limit of {EXPLAIN_TEXTS}")
    return texts, top_k, explain


# --- the app ------------------------------------------------------------------------------------------


def build_app(scorer: Scorer, settings: ServeSettings, path: Path) -> Starlette:
    """The ASGI app serving `scorer` with `settings`' limits."""

    def score(texts: list[str]) -> list[dict[str, Any]]:  # on the scoring thread
        return [prediction.to_dict() for prediction in scorer.predict(texts)]

    batcher = Batcher(score, settings.max_batch, settings.max_wait_ms / 1000, settings.max_queue)
    description = describe(scorer, path, settings.backend)

    def explained(texts: list[str], top_k: int | None) -> list[dict[str, Any]]:
        """Predictions with their occlusion explanations, as `predict --explain --json` gives them
        (torch backend only: explaining rescores the model on variants of each document)."""
        from rnnclf.inference.explain import explain_labels, explain_one

        records = []
        for prediction in scorer.predict(texts, top_k):
            record = prediction.to_dict()
            if prediction.labels is not None:  # multi-label: one per chosen label
                chosen = explain_labels(scorer, prediction.text, prediction.labels)  # type: ignore[arg-type]
                record["explanations"] = [each.to_dict() for each in chosen]
            else:
                record["explanation"] = explain_one(scorer, prediction.text).to_dict()  # type: ignore[arg-type]
            records.append(record)
        return records

    async def predict(request: Request) -> Response:
        """
        summary: Label texts
        description: >
          Each text gets the record `rnnclf predict --json` prints for it: the label (multi-label:
          the labels at or above their thresholds) and probabilities, most likely first.
        requestBody:
          required: true
          content:
            application/json:
              schema:
                type: object
                required: [texts]
                properties:
                  texts: {type: array, items: {type: string}, minItems: 1}
                  top_k: {type: integer, minimum: 1, description: "probabilities of the K most likely labels"}
                  explain:
                    type: boolean
                    default: false
                    description: "torch backend: the words that pushed each prediction most"
              example: {"texts": ["Who wrote Hamlet ?"], "top_k": 2}
        responses:
          200:
            description: '{"predictions": [{"text": ..., "label": ..., "probabilities": {...}}, ...]}'
          400:
            description: 'invalid JSON, a missing or wrong field: {"error": "texts: ...", "field": "texts"}'
          413: {description: body over --max-body bytes, or more than --max-texts texts}
          415: {description: Content-Type is not application/json}
          503: {description: overloaded (the queue holds --max-queue documents); retry later}
        """
        try:
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                raise BadRequest(415, "Content-Type", f"expected application/json, got {media or 'none'}")
            body = await asyncio.wait_for(read_body(request, settings.max_body), BODY_SECONDS)
            texts, top_k, explain = parse_request(body, settings.max_texts)
            if explain and settings.backend != "torch":
                raise BadRequest(400, "explain", f"not available with the {settings.backend} backend")
            if explain:
                records = await batcher.call(lambda: explained(texts, top_k), len(texts))
            else:
                records = await batcher.submit(texts, top_k)
        except BadRequest as bad:
            return refusal(bad.status, bad.field, str(bad))
        except (TimeoutError, asyncio.TimeoutError):
            return refusal(408, "body", f"not received within {BODY_SECONDS:.0f} s")
        except Overloaded as full:
            return refusal(
                503, None, f"overloaded: {full} (--max-queue); retry shortly", {"Retry-After": "1"}
            )
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening; uvicorn drops it
        return JSONResponse({"predictions": records})

    async def health(request: Request) -> Response:
        """
        summary: Is the server up with its model loaded
        responses:
          200: {description: '{"status": "ok", "queued": documents waiting, "batches": scoring calls made}'}
        """
        return JSONResponse({"status": "ok", "queued": batcher.waiting, "batches": batcher.batches})

    async def model(request: Request) -> Response:
        """
        summary: What is served
        responses:
          200: {description: 'labels, config summary, metrics, format version, backend'}
        """
        return JSONResponse(description)

    schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "rnnclf serve", "version": _version()}})

    async def openapi(request: Request) -> Response:
        return JSONResponse(schemas.get_schema(routes=request.app.routes))

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(schemas.get_schema(routes=request.app.routes), description))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()  # after uvicorn has answered every request in flight

    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/model", model, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_allowed, Exception: _failed},
    )
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    return refusal(404, None, f"no such endpoint: {request.url.path} (see /docs)")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return refusal(405, None, f"{request.method} not allowed on {request.url.path} (see /docs)")


async def _failed(request: Request, exc: Exception) -> Response:
    """A bug, not a bad request: a JSON 500 (uvicorn logs the traceback); the server keeps serving."""
    return refusal(500, None, f"internal error ({type(exc).__name__}); the server log has the details")


def _version() -> str:
    from rnnclf import __version__

    return __version__


def docs_page(schema: dict[str, Any], description: dict[str, Any]) -> str:
    """A small self-contained HTML page: each endpoint with its summary, request and answers (no
    JavaScript or CDN: it works on a machine without internet access)."""
    import html

    parts = [
        "<!doctype html><meta charset=utf-8><title>rnnclf serve</title>",
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}pre{background:#f4f4f4;"
        "padding:.5em;white-space:pre-wrap}</style>",
        f"<h1>rnnclf serve</h1><p>{html.escape(description['model'])} ({description['backend']}): "
        f"{len(description['labels'])} labels. Machine-readable: <a href=/openapi.json>/openapi.json</a>.",
    ]
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            parts.append(f"<h2>{method.upper()} {html.escape(path)}</h2>")
            parts.append(f"<p>{html.escape(operation.get('summary', ''))}</p>")
            if "description" in operation:
                parts.append(f"<p>{html.escape(operation['description'])}</p>")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                parts.append(f"<pre>{html.escape(json.dumps(body.get('schema'), indent=2))}</pre>")
                if "example" in body:
                    parts.append(f"<p>Example body:</p><pre>{html.escape(json.dumps(body['example']))}</pre>")
            for status, answer in operation.get("responses", {}).items():
                parts.append(f"<p><b>{status}</b> {html.escape(str(answer.get('description', '')))}</p>")
    return "\n".join(parts)


# --- running it ---------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn's server, ending with exit code 0 after a graceful stop. uvicorn re-raises the SIGTERM
    or SIGINT it caught once it has shut down (so the process dies of the signal, or raises
    KeyboardInterrupt); a server that finished every request in flight has stopped as asked."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def _bound_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a taken port is a one-line error (exit 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets
    # whose proto says TCP. Without it every answer, written as headers then body, waited for the client's
    # delayed ACK: ~44 ms a request, even GET /health (BENCHMARKS.md, "Serving").
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise RnnclfError(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    sock.set_inheritable(True)
    return sock


def _options(settings: ServeSettings) -> dict[str, Any]:
    """uvicorn's settings, the same for one process (uvicorn.Config) and for --workers (uvicorn.run)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "access_log": settings.access_log,
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": settings.graceful_seconds,
        "server_header": False,
        "log_level": "info",
    }


def _announce(settings: ServeSettings, path: Path) -> None:
    """One line in uvicorn's log: what is served where (uvicorn says nothing when given a socket)."""
    logging.getLogger("uvicorn.error").info(
        "Serving %s (%s backend) on http://%s:%d (API: /docs; Ctrl-C or SIGTERM stops)",
        path,
        settings.backend,
        f"[{settings.host}]" if ":" in settings.host else settings.host,
        settings.port,
    )


def app_from_environment() -> Starlette:
    """The app of one --workers process: settings from $RNNCLF_SERVE_SETTINGS (uvicorn's factory)."""
    settings = ServeSettings(**json.loads(os.environ[SETTINGS_VARIABLE]))
    path = Path(settings.model or "")
    return build_app(load_scorer(path, settings.backend, settings.workers), settings, path)


def serve(settings: ServeSettings) -> None:
    """Load the model, listen on host:port and answer until SIGTERM or Ctrl-C (then finish the
    requests in flight and return). --workers N: N processes, each with its own model, sharing the
    listening socket (uvicorn's supervisor)."""
    settings.check()
    path = model_path(settings)
    if settings.workers == 1:
        app = build_app(load_scorer(path, settings.backend), settings, path)
        sock = _bound_socket(settings.host, settings.port)
        server = _Server(uvicorn.Config(app, **_options(settings)))
        _announce(settings, path)
        server.run(sockets=[sock])
        return
    # Load once here so a bad model is one line now, not an error in every worker.
    load_scorer(path, settings.backend, settings.workers)
    os.environ[SETTINGS_VARIABLE] = json.dumps({**asdict(settings), "model": str(path)})
    _bound_socket(settings.host, settings.port).close()  # a taken port: one line now (uvicorn binds it)
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)  # as uvicorn.run will: the line below shows
    _announce(settings, path)
    uvicorn.run(
        "rnnclf.inference.serve:app_from_environment",
        factory=True,
        workers=settings.workers,
        **_options(settings),
    )
