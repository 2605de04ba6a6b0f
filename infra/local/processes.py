"""Background processes of the local stack: started detached, tracked by pid files.

Each process runs in its own session (process group) so that stopping it also stops any
children (the Pub/Sub emulator is a shell script that starts a JVM).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dexwatch.core.errors import DexwatchError

# A client that has not exited after this long started well (bad settings fail at once).
_CLIENT_SETTLE_S = 1.0


class StackError(DexwatchError, RuntimeError):
    """The local stack cannot start or is not in the expected state."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    host: str | None = None
    # The port the process serves on; None for a client process (simulator, publisher).
    port: int | None = None
    env: dict[str, str] | None = None


def _run_dir(state_dir: Path) -> Path:
    return state_dir / "run"


def log_path(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


def _pid_path(state_dir: Path, name: str) -> Path:
    return _run_dir(state_dir) / f"{name}.pid"


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def running_pid(state_dir: Path, name: str) -> int | None:
    path = _pid_path(state_dir, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def start(spec: ProcessSpec, state_dir: Path, ready_timeout_s: float = 30.0) -> int:
    """Start ``spec`` detached; wait until its port accepts connections (a server) or until it
    has survived a moment (a client)."""
    pid = running_pid(state_dir, spec.name)
    if pid is not None:
        return pid
    if spec.port is not None and port_open(spec.host, spec.port):
        raise StackError(
            f"{spec.name}: port {spec.host}:{spec.port} is already taken by another process; "
            f"stop it or choose another port in the settings"
        )
    log = log_path(state_dir, spec.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    _run_dir(state_dir).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(spec.env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            spec.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    _pid_path(state_dir, spec.name).write_text(str(proc.pid))
    started = time.monotonic()
    while time.monotonic() - started < ready_timeout_s:
        if proc.poll() is not None:
            _pid_path(state_dir, spec.name).unlink(missing_ok=True)
            tail = log.read_text(errors="replace")[-2000:]
            raise StackError(f"{spec.name} exited with code {proc.returncode}; log {log}:\n{tail}")
        if spec.port is None:
            if time.monotonic() - started >= _CLIENT_SETTLE_S:
                return proc.pid
        elif port_open(spec.host, spec.port):
            return proc.pid
        time.sleep(0.1)
    stop(state_dir, spec.name)
    raise StackError(
        f"{spec.name} did not open {spec.host}:{spec.port} in {ready_timeout_s}s; see {log}"
    )


def stop(state_dir: Path, name: str, grace_s: float = 10.0) -> bool:
    """Stop a process and its group; True if one was running."""
    pid = running_pid(state_dir, name)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        _signal_group(pid, signal.SIGKILL)
    # Children of the group (the emulator's JVM) may outlive the leader by a moment.
    _signal_group(pid, signal.SIGKILL)
    _pid_path(state_dir, name).unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
