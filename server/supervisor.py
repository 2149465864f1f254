"""Child processes of `memoryd up`: spawn, watch, stop; leave nothing behind.

Each child runs in its own process group so that a Ctrl-C at the terminal reaches
only `memoryd up`, which then stops the children in order (one SIGTERM each, not a
SIGINT and a SIGTERM racing). On Linux a child also gets SIGTERM if `up` itself
dies (even by SIGKILL), so no server or worker outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_KILL_WAIT_S = 5.0


class StopSignal:
    """Turns SIGINT and SIGTERM into a flag the main loop polls, instead of an
    exception raised wherever the main thread happens to be."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.received: str | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    def exit_description(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"


class Children:
    """The running children, stopped together."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def spawn(self, name: str, argv: list[str], *, env: Mapping[str, str]) -> Child:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            process_group=0,
            preexec_fn=_parent_death_signal(),
        )
        child = Child(name=name, process=process)
        self._children.append(child)
        log.info("started %s (pid %d)", name, process.pid)
        return child

    def first_exited(self) -> Child | None:
        return next((c for c in self._children if c.process.poll() is not None), None)

    def stop(self, grace: float) -> bool:
        """SIGTERM every child, SIGKILL those still running after `grace` seconds.

        Returns True when every child stopped by itself: exit code 0, or killed by
        our SIGTERM before it had installed its handler (still starting up).
        """
        running = [c for c in self._children if c.process.poll() is None]
        for child in running:
            _signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        clean = True
        for child in running:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within %.0f s; killing it", child.name, grace)
                _signal_group(child.process.pid, signal.SIGKILL)
                child.process.wait(timeout=_KILL_WAIT_S)
                clean = False
                continue
            if child.process.returncode not in (0, -signal.SIGTERM):
                log.error("%s stopped with %s", child.name, child.exit_description())
                clean = False
        for child in self._children:
            # Anything the child started in its group and left behind.
            _signal_group(child.process.pid, signal.SIGKILL)
        self._children.clear()
        return clean


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already empty
        os.killpg(pgid, sig)


def _parent_death_signal() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    # Loaded here, in the parent: the function below runs between fork and exec,
    # where little more than a raw syscall is safe.
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def set_pdeathsig() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return set_pdeathsig
