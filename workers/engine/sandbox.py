"""Run the engine in a sandboxed child process and turn whatever happens into a
result or an EngineFailure.

The child is a fresh interpreter (``python -m workers.engine child``): the
equivalent of multiprocessing's spawn, never a fork of a worker that may hold
CUDA or database connections. It gets:

- an environment built from an allow-list (no DATABASE_URL, CELERY_*,
  SECRET_KEY, nothing whose name mentions PASSWORD/TOKEN/SECRET/KEY), HOME and
  TMPDIR pointing at a private temporary folder that is also its cwd and is
  removed afterwards; Hugging Face libraries are told to stay offline;
- resource limits: RLIMIT_AS (address space; ``limits["memory_bytes"]``, env
  AUDIT_ENGINE_MEMORY_BYTES, default 16 GiB; not applied on CUDA, where the
  driver reserves tens of GiB of virtual address space up front and any useful
  RLIMIT_AS breaks context creation: GPU memory is bounded by the GPU and host
  memory by the container/cgroup there), RLIMIT_CPU (``cpu_seconds``, default
  timeout x CPUs + 60 s), RLIMIT_FSIZE (``file_bytes``, env
  AUDIT_ENGINE_FILE_BYTES, default 16 GiB);
- PR_SET_PDEATHSIG=SIGKILL, so it dies with the worker, and its own session,
  so a timeout kills its whole process group.

The limits are set in ``preexec_fn``, between fork and exec. That hook is
documented as unsafe when the parent runs threads; it is kept minimal
(setrlimit and one pre-resolved prctl call, no allocation-heavy Python) and
Celery's prefork pool runs tasks in single-threaded processes.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from workers.engine.errors import EngineFailure

REPO_ROOT = str(Path(__file__).resolve().parents[2])
GIB = 1 << 30
DEFAULT_MEMORY_BYTES = 16 * GIB
DEFAULT_FILE_BYTES = 16 * GIB
MAX_LINE_BYTES = 64 << 20
STDERR_TAIL_LINES = 20
KILL_WAIT_S = 10.0
# After its result line a child that does not exit (a library's thread hanging at interpreter
# teardown) gets this long, then is killed and its result kept.
EXIT_GRACE_S = 30.0

ENV_ALLOW = (
    "PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
    "AUDIT_CPU_TDP_W", "AUDIT_GPU_TDP_W", "AUDIT_ALLOW_UNSAFE_FORMATS", "AUDIT_ARCHITECTURE_MODULES",
    "AUDIT_POWERCAP_ROOT",
)
ENV_DENY = re.compile(r"PASSWORD|TOKEN|SECRET|KEY|DATABASE|CELERY|BROKER|CREDENTIAL", re.IGNORECASE)
OOM_MARKERS = ("MemoryError", "std::bad_alloc", "can't allocate memory", "Cannot allocate memory",
               "CUDA out of memory", "OutOfMemoryError")
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}

PR_SET_PDEATHSIG = 1


def _load_prctl():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def child_env(private_dir: str, base: dict | None = None, *, limit_arenas: bool = True) -> dict:
    base = os.environ if base is None else base
    env = {k: base[k] for k in ENV_ALLOW if k in base and not ENV_DENY.search(k)}
    python_path = [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != REPO_ROOT]
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update({
        "HOME": private_dir,
        "TMPDIR": private_dir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    })
    if limit_arenas:
        # glibc reserves up to 64 MiB of address space per malloc arena, one arena per thread up to
        # 8 x cores: on a large machine that alone can eat an RLIMIT_AS budget without using memory
        env.setdefault("MALLOC_ARENA_MAX", "8")
    return env


def resolve_limits(limits: dict | None, *, timeout_s: float, device: str) -> dict:
    limits = dict(limits or {})
    if device.startswith("cuda"):
        limits["memory_bytes"] = None  # see module docstring
    elif "memory_bytes" not in limits:
        limits["memory_bytes"] = int(os.environ.get("AUDIT_ENGINE_MEMORY_BYTES") or DEFAULT_MEMORY_BYTES)
    limits.setdefault("cpu_seconds", int(timeout_s * (os.cpu_count() or 1)) + 60)
    limits.setdefault("file_bytes", int(os.environ.get("AUDIT_ENGINE_FILE_BYTES") or DEFAULT_FILE_BYTES))
    return limits


def _preexec(limits: dict, parent_pid: int):
    memory, cpu, fsize = limits.get("memory_bytes"), limits.get("cpu_seconds"), limits.get("file_bytes")

    def apply() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if cpu:
            # soft limit sends SIGXCPU; the hard limit a little later SIGKILL
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        if fsize:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return apply


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        pass


def _stderr_tail(fh) -> str:
    try:
        fh.flush()
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return ""
    return "\n".join(text.strip().splitlines()[-STDERR_TAIL_LINES:])


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _failure_from_exit(returncode: int, stderr_tail: str, limits: dict) -> EngineFailure:
    oom = any(marker in stderr_tail for marker in OOM_MARKERS)
    if returncode < 0:
        signum = -returncode
        name = _signal_name(signum)
        if oom:
            return EngineFailure("oom", f"the engine ran out of memory ({name}):\n{stderr_tail}")
        if signum == signal.SIGXCPU:
            return EngineFailure("timeout", f"the engine exceeded its CPU-time limit of {limits.get('cpu_seconds')} s")
        if signum == signal.SIGXFSZ:
            return EngineFailure("killed", f"the engine wrote a file over the {limits.get('file_bytes')}-byte limit "
                                           f"and was killed by {name} (signal {signum})")
        if signum in CRASH_SIGNALS:
            return EngineFailure("crash", f"the engine crashed with {name} (signal {signum}):\n{stderr_tail}")
        return EngineFailure("killed", f"the engine was killed by {name} (signal {signum})"
                                       + (" — out of memory?" if signum == signal.SIGKILL else ""))
    if oom:
        return EngineFailure("oom", f"the engine ran out of memory (limit "
                                    f"{limits.get('memory_bytes') or 'none'} bytes):\n{stderr_tail}")
    if returncode != 0:
        return EngineFailure("crash", f"the engine exited with status {returncode}:\n{stderr_tail}")
    return EngineFailure("bad-output", "the engine exited without a result")


class _Lines:
    """Splits a byte stream into lines, refusing runaway lines."""

    def __init__(self):
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > MAX_LINE_BYTES:
            raise EngineFailure("bad-output", f"the engine wrote a line over {MAX_LINE_BYTES} bytes")
        return lines

    def rest(self) -> bytes:
        return self._buf


def _parse(line: bytes) -> dict:
    try:
        event = json.loads(line)
    except ValueError:
        shown = line[:200].decode("utf-8", errors="replace")
        raise EngineFailure("bad-output", f"the engine wrote something that is not a JSON line: {shown!r}") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise EngineFailure("bad-output", f"the engine wrote a line that is not an event: {str(event)[:200]!r}")
    return event


def run_engine(
    request: dict,
    *,
    timeout_s: float,
    on_event: Callable[[dict], None],
    tick_s: float = 5.0,
    on_tick: Callable[[], None] | None = None,
    limits: dict | None = None,
    _entry: list[str] | None = None,
) -> dict:
    """Run ``request`` in a sandboxed child; the result document or EngineFailure.

    ``_entry`` replaces ``["-m", "workers.engine", "child"]`` (tests only).
    """
    device = str(request.get("device") or "cpu")
    limits = resolve_limits(limits, timeout_s=timeout_s, device=device)
    argv = [sys.executable] + (_entry or ["-m", "workers.engine", "child"])
    private_dir = tempfile.mkdtemp(prefix="audit-engine-")
    stderr_fh = tempfile.TemporaryFile()
    proc = None
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr_fh,
            cwd=private_dir,
            env=child_env(private_dir, limit_arenas=bool(limits.get("memory_bytes"))),
            start_new_session=True,
            close_fds=True,
            preexec_fn=_preexec(limits, os.getpid()),  # noqa: PLW1509 - see module docstring
        )
        try:
            proc.stdin.write(json.dumps(request).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; the exit status says why
        result, error = _pump(proc, timeout_s=timeout_s, tick_s=tick_s, on_event=on_event, on_tick=on_tick)
        if error is not None:
            raise EngineFailure(str(error.get("kind") or "crash"), str(error.get("message") or "engine error"))
        if result is not None:
            # the result was complete; a crash at interpreter teardown (seen with CUDA and
            # onnxruntime) does not make it wrong
            return result
        raise _failure_from_exit(proc.returncode, _stderr_tail(stderr_fh), limits)
    finally:
        if proc is not None and proc.poll() is None:
            _kill_group(proc)
        if proc is not None:
            # anything it started and left behind in its session goes too
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if proc.stdout:
                proc.stdout.close()
        stderr_fh.close()
        shutil.rmtree(private_dir, ignore_errors=True)


def _pump(proc, *, timeout_s, tick_s, on_event, on_tick):
    """Read events until the child exits; heartbeat every tick_s; enforce the deadline."""
    started = time.monotonic()
    deadline = started + timeout_s
    next_tick = started + tick_s
    fd = proc.stdout.fileno()
    lines = _Lines()
    result = error = None
    eof = False
    grace_until = None
    while True:
        now = time.monotonic()
        if grace_until is None and (result is not None or error is not None):
            grace_until = now + EXIT_GRACE_S
        if grace_until is not None and now >= min(grace_until, deadline):
            _kill_group(proc)  # it said all it had to say and would not exit
            return result, error
        if now >= deadline:
            _kill_group(proc)
            raise EngineFailure("timeout", f"the engine exceeded {timeout_s:g} s and was stopped")
        if now >= next_tick:
            if on_tick is not None:
                on_tick()
            next_tick = now + tick_s
        wait = max(0.0, min(next_tick, deadline, grace_until or deadline) - now)
        if eof:
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            return result, error
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        data = os.read(fd, 1 << 16)
        if not data:
            eof = True
            if lines.rest().strip():
                _kill_group(proc)
                raise EngineFailure("bad-output", "the engine's output ended in the middle of a line")
            continue
        try:
            for line in lines.feed(data):
                if not line.strip():
                    continue
                event = _parse(line)
                kind = event["event"]
                if kind == "result":
                    result = event.get("result")
                    if not isinstance(result, dict):
                        raise EngineFailure("bad-output", "the engine's result is not an object")
                elif kind == "error":
                    error = event
                elif kind == "progress":
                    on_event(event)
                # other event kinds are ignored: newer children may say more
        except EngineFailure:
            _kill_group(proc)
            raise
