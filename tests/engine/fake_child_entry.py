"""A stand-in engine child for the sandbox tests, run as a script.

Its behaviour is driven by the request's "behaviour" key. Where it can, it goes
through the real protocol code in workers.engine.child, so those tests cover it.
"""
import json
import os
import signal
import subprocess
import sys
import time


def run_request(request, progress):
    behaviour = request["behaviour"]
    if behaviour == "ok":
        print("noise a model printed on stdout")  # must not corrupt the protocol
        progress({"stage": "measure", "percent": 50.0, "message": "half", "variant": 1, "n_variants": 1})
        return {"schema_version": 1, "variants": [], "nan": float("nan")}
    if behaviour == "env":
        return {"env": sorted(os.environ), "home": os.environ.get("HOME"), "cwd": os.getcwd(),
                "tmpdir": os.environ.get("TMPDIR"), "pythonpath": os.environ.get("PYTHONPATH")}
    if behaviour == "sleep":
        if request.get("grandchild"):
            grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            progress({"stage": "grandchild", "percent": 0.0, "message": str(grandchild.pid)})
        if request.get("report_pid"):
            progress({"stage": "pid", "percent": 0.0, "message": str(os.getpid())})
        time.sleep(request["seconds"])
        return {"slept": request["seconds"]}
    if behaviour == "result-then-hang":  # a non-daemon thread keeps the interpreter from exiting
        import threading
        threading.Thread(target=time.sleep, args=(60,)).start()
        return {"done": True}
    if behaviour == "load-error":
        from workers.engine.errors import LoadError
        raise LoadError("cannot load /nowhere/model.safetensors: no such file")
    if behaviour == "crash":
        raise RuntimeError("something broke inside")
    if behaviour == "allocate":
        block = bytearray(request["bytes"])
        return {"allocated": len(block)}
    if behaviour == "deep-tree":  # a chain of folders past the recursion limit and PATH_MAX
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(request["depth"]):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(fd)
        return {"depth": request["depth"]}
    if behaviour == "spin":
        while True:
            pass
    raise ValueError(f"unknown behaviour {behaviour}")


def main():
    request = json.loads(sys.stdin.read())
    behaviour = request["behaviour"]
    if behaviour == "huge-line":  # one line of output past any sensible result's size
        block = b"x" * (1 << 20)
        for _ in range(request["bytes"] >> 20):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
        return 0
    if behaviour == "print-garbage":
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
        return 0
    if behaviour == "kill-self":
        os.kill(os.getpid(), signal.SIGKILL)
    if behaviour == "exit-nonzero":
        sys.stderr.write("fatal: the C++ side gave up\n")
        sys.stderr.flush()
        os._exit(3)
    if behaviour == "raw-memory-error":  # dies of MemoryError without an error line
        bytearray(request["bytes"])
    from workers.engine.child import main as child_main
    return child_main(run_request=run_request, request=request)


if __name__ == "__main__":
    raise SystemExit(main())
