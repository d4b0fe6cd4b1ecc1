"""Run the engine in a sandboxed child process and turn whatever happens into a result or an
EngineFailure.

The child is a fresh interpreter (``python -m workers.engine child``): the equivalent of
multiprocessing's spawn, never a fork of a worker that may hold CUDA or database connections.
It is started inside the sandbox (workers/engine/sandbox.py) with the environment and the
``preexec_fn`` of workers/engine/launch.py, in its own session (a timeout kills its whole
process group), with resource limits (``resolve_limits``): RLIMIT_AS (address space;
``limits["memory_bytes"]``, env AUDIT_ENGINE_MEMORY_BYTES, default 16 GiB; not applied on
CUDA, where the driver reserves tens of GiB of virtual address space up front and any useful
RLIMIT_AS breaks context creation: GPU memory is bounded by the GPU and host memory by the
container/cgroup there), RLIMIT_CPU (``cpu_seconds``, default timeout x CPUs + 60 s),
RLIMIT_FSIZE (``file_bytes``, env AUDIT_ENGINE_FILE_BYTES, default 16 GiB), RLIMIT_NPROC
(``max_processes``, env AUDIT_ENGINE_MAX_PROCS, default 4096).

It talks in JSON lines on stdout (progress events, one result or error), read here in linear
time with a bound on a line; what it returns is untrusted (workers/result_schema.py checks it
before anything is stored).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

from workers.engine.errors import EngineFailure
from workers.engine.launch import GIB, child_env
from workers.engine.private_dirs import private_dir_prefix, remove_tree
from workers.engine.sandbox import Launch, SandboxUnavailable, launch_problem, sandboxed

DEFAULT_MEMORY_BYTES = 16 * GIB
DEFAULT_FILE_BYTES = 16 * GIB
# One line of the child's output (a progress event, or the whole result): larger is refused as
# it arrives. The stored result is bounded tighter after parsing (workers/result_schema.py).
MAX_LINE_BYTES = 16 << 20
STDERR_TAIL_LINES = 20
KILL_WAIT_S = 10.0
# After its result line a child that does not exit (a library's thread hanging at interpreter
# teardown) gets this long, then is killed and its result kept.
EXIT_GRACE_S = 30.0
OOM_MARKERS = ("MemoryError", "std::bad_alloc", "can't allocate memory", "Cannot allocate memory",
               "CUDA out of memory", "OutOfMemoryError")
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}
# processes and threads of the sandbox's host user (RLIMIT_NPROC): a fork bomb stops here
MAX_PROCS_ENV, DEFAULT_MAX_PROCS = "AUDIT_ENGINE_MAX_PROCS", 4096


def resolve_limits(limits: dict | None, *, timeout_s: float, device: str) -> dict:
    limits = dict(limits or {})
    if device.startswith("cuda"):
        limits["memory_bytes"] = None  # see module docstring
    elif "memory_bytes" not in limits:
        limits["memory_bytes"] = int(os.environ.get("AUDIT_ENGINE_MEMORY_BYTES") or DEFAULT_MEMORY_BYTES)
    limits.setdefault("cpu_seconds", int(timeout_s * (os.cpu_count() or 1)) + 60)
    limits.setdefault("file_bytes", int(os.environ.get("AUDIT_ENGINE_FILE_BYTES") or DEFAULT_FILE_BYTES))
    limits.setdefault("max_processes", int(os.environ.get(MAX_PROCS_ENV) or DEFAULT_MAX_PROCS))
    return limits


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


def _child_status(returncode: int, mode: str) -> int:
    """bwrap exits with 128 + N when the sandboxed process died of signal N: report it as
    the signal, as Popen does for a direct child."""
    if mode == "bwrap" and 128 < returncode < 128 + 65:
        return -(returncode - 128)
    return returncode


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
    """Splits a byte stream into lines, refusing runaway lines. Linear in the stream's size: each
    chunk is searched once and a line's pieces are joined once (re-splitting a growing buffer
    made a 70 MB line cost 36-55 s of the worker's CPU)."""

    def __init__(self, max_line: int = MAX_LINE_BYTES):
        self._parts: list[bytes] = []
        self._size = 0
        self._max = max_line

    def feed(self, data: bytes) -> list[bytes]:
        lines, start = [], 0
        while (end := data.find(b"\n", start)) >= 0:
            self._take(data[start:end])
            lines.append(b"".join(self._parts))
            self._parts, self._size = [], 0
            start = end + 1
        if start < len(data):
            self._take(data[start:])
        return lines

    def _take(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._max:
            raise EngineFailure("bad-output", f"the engine wrote a line over {self._max} bytes")
        self._parts.append(piece)

    def rest(self) -> bytes:
        return b"".join(self._parts)


def _parse(line: bytes) -> dict:
    try:
        event = json.loads(line)
    except ValueError:
        shown = line[:200].decode("utf-8", errors="replace")
        raise EngineFailure("bad-output", f"the engine wrote something that is not a JSON line: {shown!r}") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise EngineFailure("bad-output", f"the engine wrote a line that is not an event: {str(event)[:200]!r}")
    return event


def _start(launch: "Launch", private_dir: str, limits: dict, stderr_fh) -> subprocess.Popen:
    kwargs = launch.popen_kwargs(limits)
    if launch.mode == "none":
        kwargs["cwd"] = private_dir  # no sandbox to change into it
    return subprocess.Popen(
        launch.argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr_fh,
        env=child_env(private_dir, limit_arenas=bool(limits.get("memory_bytes"))),
        start_new_session=True,
        close_fds=True,
        **kwargs,
    )


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
    inner = [sys.executable] + (_entry or ["-m", "workers.engine", "child"])
    # what the child may read beyond Python and the engine: this audit's upload, dataset and
    # serving workload, the reference version's upload it is compared with (and a test's
    # stand-in entry script)
    reference = request.get("reference") if isinstance(request.get("reference"), dict) else {}
    read_only = [str(p) for p in (request.get("path"), request.get("dataset"), request.get("workload"),
                                  reference.get("path"))
                 if isinstance(p, str) and os.path.isabs(p)]
    read_only += [p for p in (_entry or []) if os.path.isabs(p) and os.path.isfile(p)]
    private_dir = tempfile.mkdtemp(prefix=private_dir_prefix())
    stderr_fh = tempfile.TemporaryFile()
    proc = None
    launch = None
    try:
        try:
            launch = sandboxed(inner, private_dir=private_dir, read_only=read_only, device=device)
        except SandboxUnavailable as exc:
            raise EngineFailure("crash", f"the engine sandbox could not be built: {exc}") from None
        try:
            proc = _start(launch, private_dir, limits, stderr_fh)
        except (OSError, subprocess.SubprocessError) as exc:
            if launch.mode != "bwrap":
                raise
            raise EngineFailure("crash", f"the engine sandbox (bubblewrap) could not be started: "
                                         f"{launch_problem(launch, exc)}") from None
        launch.close()
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
            # onnxruntime) does not make it wrong. Which sandbox ran it is the worker's word,
            # never the child's.
            result["sandbox"] = launch.record()
            return result
        raise _failure_from_exit(_child_status(proc.returncode, launch.mode), _stderr_tail(stderr_fh), limits)
    finally:
        if launch is not None:
            launch.close()
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
        remove_tree(private_dir)


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
