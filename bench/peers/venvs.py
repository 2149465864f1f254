"""Each peer in its own virtualenv under the cache dir (.peers/<name>/venv),
installed from its pinned requirements file next to this module, so that no
peer's dependencies ever enter memoryd's environment.

The files pin every distribution (a freeze of a working install) and are
installed with --no-deps: agent-memory-server names a client release the
registry lacks, and the pins were chosen around it (see the .in files). A
stamp holding the file's hash marks a finished install; a changed file
reinstalls.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import shutil
import subprocess
from pathlib import Path

from bench.harness import progress
from bench.peers.adapter import PeerUnavailable

HERE = Path(__file__).resolve().parent
_INSTALL_TIMEOUT_S = 3600.0


def requirements_file(name: str) -> Path:
    return HERE / f"requirements-{name}.txt"


def find_python(version: str) -> Path | None:
    """An interpreter of `version` (e.g. "3.12") that runs: one pyenv has
    built, /usr/bin, or on PATH (pyenv's shims are on PATH too, but they
    only run the version pyenv has selected, so each candidate is tried)."""
    candidates = sorted(
        glob.glob(str(Path.home() / f".pyenv/versions/{version}*/bin/python{version}"))
    )
    candidates += [f"/usr/bin/python{version}", shutil.which(f"python{version}") or ""]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and _runs(candidate, version):
            return Path(candidate)
    return None


def _runs(python: str, version: str) -> bool:
    try:
        done = subprocess.run(
            [python, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def _run(command: list[str], log: Path) -> None:
    with log.open("ab") as out:
        completed = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, timeout=_INSTALL_TIMEOUT_S, check=False
        )
    if completed.returncode != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")]
        raise PeerUnavailable(
            f"installing into {log.parent / 'venv'} failed: "
            f"{(errors or lines or ['no output'])[-1].strip()}"
        )


def ensure_venv(cache: Path, name: str, python_version: str) -> Path:
    """The peer's virtualenv, installed if missing or stale; its bin dir."""
    requirements = requirements_file(name)
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    home = cache / name
    venv = home / "venv"
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return venv / "bin"
    python = find_python(python_version)
    if python is None:
        raise PeerUnavailable(
            f"{name} needs Python {python_version}, and none is installed here "
            f"(looked under ~/.pyenv/versions, in /usr/bin and on PATH); Debian bookworm's "
            f"packages stop at 3.11 and PyPI ships no interpreter"
        )
    home.mkdir(parents=True, exist_ok=True)
    log = home / "install.log"
    log.write_text("")
    progress(f"installing {name} into {venv} (Python {python_version}; log: {log})")
    if venv.exists():
        shutil.rmtree(venv)
    _run([str(python), "-m", "venv", str(venv)], log)
    pip = str(venv / "bin" / "pip")
    _run([pip, "install", "--quiet", "--no-deps", "-r", str(requirements)], log)
    stamp.write_text(digest + "\n")
    return venv / "bin"


async def ensure_venv_async(cache: Path, name: str, python_version: str) -> Path:
    return await asyncio.to_thread(ensure_venv, cache, name, python_version)
