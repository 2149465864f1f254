"""`memoryd serve` as a real process: how it ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.support.processes import MemorydUp, free_port, is_serving, memoryd_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_serve_ends_with_exit_0_and_its_last_log_line_on_sigterm(
    memoryd_stack: MemorydUp,
) -> None:
    # serve ends without the interpreter's teardown (server/cli.py _exit_now): its
    # exit code and the logs written up to the end must survive that.
    address = f"127.0.0.1:{free_port()}"
    with subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"],
        env=memoryd_env(memoryd_stack.data_dir, address),
        stderr=subprocess.PIPE,
        text=True,
    ) as serve:
        try:
            deadline = time.monotonic() + 120
            while not is_serving(address, timeout=0.5):
                assert serve.poll() is None, "serve exited before SERVING"
                assert time.monotonic() < deadline, "serve not SERVING after 120 s"
                time.sleep(0.2)
            serve.send_signal(signal.SIGTERM)
            _, err = serve.communicate(timeout=30)
            assert serve.returncode == 0, err
            last = err.rstrip().splitlines()[-1]
            assert last.endswith("shutting down: finishing in-flight calls"), err
        finally:
            if serve.poll() is None:
                serve.kill()
