"""The sandboxed child's entrypoint: ``python -m workers.engine child``.

Protocol (see workers.engine.sandbox): one JSON request on stdin; on stdout one
JSON object per line: any number of progress events, then exactly one of
``{"event": "result", "result": {...}}`` or
``{"event": "error", "kind": "load-error" | "oom" | "crash", "message": str}``.
The exit status is 0 whenever one of those lines was written.

Models and the libraries under them print to stdout freely; so that nothing
they print can corrupt the protocol, fd 1 is pointed at stderr before anything
else runs and protocol lines go to a private duplicate of the original stdout.
"""
from __future__ import annotations

import json
import math
import os
import sys
import traceback

OOM_MARKERS = ("MemoryError", "std::bad_alloc", "can't allocate memory", "Cannot allocate memory",
               "out of memory", "OutOfMemoryError")


class Protocol:
    def __init__(self, fd: int):
        self._out = os.fdopen(fd, "w", encoding="utf-8", buffering=1)

    def send(self, event: dict) -> None:
        self._out.write(json.dumps(finite(event), allow_nan=False, default=str) + "\n")
        self._out.flush()


def take_stdout() -> Protocol:
    """Keep the real stdout for the protocol and send fd 1 (and sys.stdout) to stderr."""
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return Protocol(proto_fd)


def finite(value):
    """NaN and infinities become null: the result lands in JSON columns that reject them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def error_kind(exc: BaseException) -> str:
    from workers.engine.errors import FormatError, LoadError  # noqa: PLC0415

    if isinstance(exc, (LoadError, FormatError, FileNotFoundError)):
        return "load-error"
    if isinstance(exc, MemoryError) or any(m in str(exc) for m in OOM_MARKERS):
        return "oom"
    return "crash"


def _default_run_request():
    from workers.engine.profile import run_request  # noqa: PLC0415

    return run_request


def main(run_request=None, request: dict | None = None) -> int:
    """Run one request. ``run_request``/``request`` are injectable for tests."""
    proto = take_stdout()
    try:
        if request is None:
            request = json.loads(sys.stdin.read())
        if run_request is None:
            run_request = _default_run_request()

        def progress(event: dict) -> None:
            proto.send({"event": "progress", **event})

        result = run_request(request, progress)
        proto.send({"event": "result", "result": result})
    except BaseException as exc:  # noqa: BLE001 - everything becomes one error line
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc(file=sys.stderr)
        message = str(exc) or type(exc).__name__
        kind = error_kind(exc)
        if kind == "crash":
            message = f"{type(exc).__name__}: {message}"
        try:
            proto.send({"event": "error", "kind": kind, "message": message})
        except BaseException:  # noqa: BLE001 - e.g. MemoryError again; the parent reads stderr
            return 1
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
