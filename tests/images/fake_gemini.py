"""A fake Gemini API server on 127.0.0.1 that the real google-genai SDK talks to.

Each test queues the responses it wants (``server.queue(...)``); a request
with nothing queued gets a generated image.  Every request is kept (path,
headers, JSON body) so tests can assert what the SDK sent.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


def png_b64(colour: tuple[int, int, int] = (37, 99, 235), size: tuple[int, int] = (64, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def image_response(colour: tuple[int, int, int] = (37, 99, 235), size: tuple[int, int] = (64, 64)) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Here is your image."},
                        {"inlineData": {"mimeType": "image/png", "data": png_b64(colour, size)}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1290, "totalTokenCount": 1300},
        "modelVersion": "fake",
    }


def error_body(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


RATE_LIMITED = (
    429,
    error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    {"Retry-After": "0"},
)
SERVER_ERROR = (503, error_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), {})
PROMPT_BLOCKED = (200, {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": "fake"}, {})
IMAGE_SAFETY = (200, {"candidates": [{"finishReason": "IMAGE_SAFETY", "content": {"role": "model", "parts": []}}]}, {})
NO_IMAGE = (
    200,
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "I can't draw that."}]}, "finishReason": "STOP"}]},
    {},
)
BAD_IMAGE = (
    200,
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"not a png").decode()}}
                    ]
                },
                "finishReason": "STOP",
            }
        ]
    },
    {},
)
NOT_JSON = (200, "<html>gateway</html>", {})
BAD_KEY = (400, error_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."), {})


@dataclass
class FakeGemini:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    _queue: deque[tuple[int, Any, dict[str, str]]] = field(default_factory=deque)

    def queue(self, *responses: tuple[int, Any, dict[str, str]]) -> None:
        self._queue.extend(responses)

    def next(self) -> tuple[int, Any, dict[str, str]]:
        return self._queue.popleft() if self._queue else (200, image_response(), {})


@contextmanager
def fake_gemini() -> Iterator[FakeGemini]:
    state = FakeGemini()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            state.requests.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(raw or b"{}"),
                }
            )
            status, body, headers = state.next()
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
