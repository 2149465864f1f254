"""A local OpenAI-compatible `/v1/embeddings` endpoint serving memoryd's
embedding model (server.embedding.Embedder, its default backend).

    python -m bench.peers.embed_server --port 8081

agent-memory-server embeds only through LiteLLM, i.e. over HTTP to a hosted
API; this gives it the same model as everyone else, on this machine, from
the Python 3.11 environment that has the model. Prints "ready" on stdout
once the model is loaded.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from server.embedding import Embedder
from server.settings import Settings


def embeddings_response(
    vectors: list[list[float]], model: str, encoding: str | None
) -> dict[str, Any]:
    """The OpenAI response body; base64 is what the openai client asks for by default."""
    data = []
    for index, vector in enumerate(vectors):
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


def make_handler(embedder: Embedder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(HTTPStatus.OK, {"status": "ok"})

        def do_POST(self) -> None:
            if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                texts = body["input"]
                texts = [texts] if isinstance(texts, str) else list(texts)
                if not all(isinstance(text, str) for text in texts):
                    raise ValueError("input must be a string or a list of strings")
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": {"message": str(exc)}})
                return
            vectors = embedder.embed(texts)
            self._reply(
                HTTPStatus.OK,
                embeddings_response(
                    vectors, str(body.get("model", "")), body.get("encoding_format")
                ),
            )

        def _reply(self, status: HTTPStatus, document: dict[str, Any]) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would be measured as server cost

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    embedder = Embedder.load(Settings())
    server = ThreadingHTTPServer((args.host, args.port), make_handler(embedder))
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
