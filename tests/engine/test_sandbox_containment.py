"""What an exploited model cannot do to the host (issue 19): no host root, no setuid launch pad,
bounded writable places and processes, a private folder nobody else can use, cleanup that
always succeeds.

Payloads run through the engine's own launch (``sandboxed`` + ``Launch.popen_kwargs`` with the
limits ``run_engine`` resolves), as in test_sandbox_boundary.py. Writability is checked with
``os.open(path, O_WRONLY)`` closed at once: no sysctl is ever changed.
"""
import contextlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psutil
import pytest

from workers.engine.launch import child_env
from workers.engine.private_dirs import private_dir_prefix, remove_tree
from workers.engine.sandbox import DEFAULT_HOST_ID, SANDBOX_UID, sandboxed
from workers.engine.supervise import resolve_limits, run_engine

FAKE_ENTRY = Path(__file__).with_name("fake_child_entry.py")
AS_ROOT = os.geteuid() == 0


def launch(payload: str, **popen):
    """Start ``payload`` in the sandbox; (Popen, private folder, Launch) for the caller to finish."""
    private = tempfile.mkdtemp(prefix=private_dir_prefix())
    limits = resolve_limits(None, timeout_s=60, device="cpu")
    box = sandboxed([sys.executable, "-c", textwrap.dedent(payload)], private_dir=private, mode="bwrap")
    proc = subprocess.Popen(box.argv, env=child_env(private), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen, **box.popen_kwargs(limits))
    box.close()
    return proc, private


@contextlib.contextmanager
def paused_inside(payload: str):
    """Run ``payload``, which prints one JSON line and then waits for a line on stdin: yields
    (what it printed, its Popen, the host's private folder) while it waits, then lets it end."""
    proc, private = launch(payload, stdin=subprocess.PIPE)
    try:
        yield json.loads(proc.stdout.readline()), proc, private
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    finally:
        proc.kill()
        remove_tree(private)


def run_inside(payload: str) -> dict:
    proc, private = launch(payload)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        remove_tree(private)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_nothing_under_proc_is_writable_inside():
    """The core_pattern escape: bwrap leaves /proc/sys uncovered (the folder is mode 0555), and
    a child that was host uid 0 could write 765 files there. Every file under /proc outside
    the processes' own folders must refuse a write open."""
    payload = """
    import json, os
    writable, checked = [], 0
    for top, dirs, files in os.walk("/proc"):
        if top == "/proc":
            dirs[:] = [d for d in dirs if not d.isdigit() and d not in ("self", "thread-self")]
        for name in files:
            path = os.path.join(top, name)
            checked += 1
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue
            os.close(fd)
            writable.append(path)
    print(json.dumps({"writable": writable, "checked": checked}))
    """
    result = run_inside(payload)
    assert result["checked"] > 500  # /proc/sys and the rest were really walked
    assert result["writable"] == []
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger"):
        assert path not in result["writable"]


def test_the_child_is_never_host_root():
    """Inside, uid 65534; its user namespace maps that to an unprivileged host uid, as the host
    sees the process too (a kernel check that bypasses the namespace sees that uid)."""
    payload = """
    import json, os, sys
    maps = [line.split() for line in open("/proc/self/uid_map")]
    print(json.dumps({"uid": os.getuid(), "uid_map": maps,
                      "gid_map": [line.split() for line in open("/proc/self/gid_map")]}), flush=True)
    sys.stdin.readline()
    """
    with paused_inside(payload) as (inside, proc, _):
        # the host's view of every process of the sandbox (bwrap's included)
        tree = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
        host_uids = {p.uids().real for p in tree} | {p.uids().effective for p in tree}
    assert inside["uid"] == SANDBOX_UID
    assert all(m[1] != "0" for m in inside["uid_map"]), inside["uid_map"]
    assert all(m[1] != "0" for m in inside["gid_map"]), inside["gid_map"]
    assert 0 not in host_uids, host_uids
    if AS_ROOT:
        assert host_uids == {DEFAULT_HOST_ID}


def test_the_private_folder_is_no_launch_pad(tmp_path):
    """The child copies a shell into its private folder, makes it setuid and opens the folder
    to everyone. The folder is a nosuid,nodev tmpfs of its own mount namespace: nothing of it
    is on the host, where the private folder is 0700 and stays empty."""
    payload = """
    import json, os, shutil, sys
    here = os.getcwd()
    shutil.copy("/bin/sh", "sh")
    os.chmod("sh", 0o4755)
    os.chmod(here, 0o777)
    mount = next(line.split() for line in open("/proc/self/mountinfo") if line.split()[4] == here)
    print(json.dumps({"here": here, "mode": oct(os.stat("sh").st_mode), "options": mount[5],
                      "fstype": mount[mount.index("-") + 1], "super": mount[mount.index("-") + 3]}), flush=True)
    sys.stdin.readline()
    """
    with paused_inside(payload) as (inside, _, private):
        host_entries = os.listdir(private)
        host_mode = stat.S_IMODE(os.stat(private).st_mode)
    assert inside["here"] == private and inside["mode"] == oct(0o104755)  # it did what it tried ...
    assert inside["fstype"] == "tmpfs"
    assert {"nosuid", "nodev"} <= set(inside["options"].split(","))
    assert "size=" in inside["super"]
    assert host_entries == []  # ... where no host user can reach it
    assert host_mode & 0o077 == 0


def test_writable_places_and_processes_are_bounded(monkeypatch):
    monkeypatch.setenv("AUDIT_ENGINE_PRIVATE_BYTES", str(8 << 20))
    monkeypatch.setenv("AUDIT_ENGINE_SHM_BYTES", str(4 << 20))
    monkeypatch.setenv("AUDIT_ENGINE_MAX_PROCS", "4096")
    payload = """
    import errno, json, os, resource
    def fill(path):
        written = 0
        try:
            with open(path, "wb") as fh:
                while written < (64 << 20):
                    fh.write(b"x" * (1 << 20))
                    fh.flush()
                    written += 1 << 20
        except OSError as exc:
            return written, errno.errorcode.get(exc.errno)
        return written, None
    def writable(path):
        try:
            open(path, "wb").close()
            return True
        except OSError:
            return False
    print(json.dumps({"private": fill("big"), "shm": fill("/dev/shm/big"), "dev": writable("/dev/evil"),
                      "nproc": resource.getrlimit(resource.RLIMIT_NPROC)}))
    """
    result = run_inside(payload)
    assert result["private"][1] == "ENOSPC" and result["private"][0] <= 8 << 20
    assert result["shm"][1] == "ENOSPC" and result["shm"][0] <= 4 << 20
    assert result["dev"] is False
    assert result["nproc"] == [4096, 4096]


def test_a_fork_bomb_stops_at_the_process_limit(monkeypatch):
    # RLIMIT_NPROC counts every process of the sandbox's host user: as root that user is the
    # sandbox's own; unprivileged, the worker's, so leave room for what that user already runs
    running = 0 if AS_ROOT else sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"].real == os.getuid())
    threads = 0 if AS_ROOT else sum(p.num_threads() for p in psutil.process_iter() if p.uids().real == os.getuid())
    monkeypatch.setenv("AUDIT_ENGINE_MAX_PROCS", str(64 + max(running, threads)))
    payload = """
    import json, os, time
    children, error = [], None
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError as exc:
            error = type(exc).__name__
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
    print(json.dumps({"forked": len(children), "error": error}))
    """
    result = run_inside(payload)
    assert result["error"] == "BlockingIOError" and result["forked"] < 64 + max(running, threads)


@pytest.fixture
def scratch():
    """A folder outside pytest's tmp_path: should remove_tree fail, the deep tree left there must
    not break pytest's own cleanup of old tmp_paths (shutil.rmtree recurses) in later runs."""
    path = Path(tempfile.mkdtemp(prefix="remove-tree-test-"))
    yield path
    remove_tree(str(path))


def test_remove_tree_takes_any_depth_and_follows_no_link(scratch):
    outside = scratch / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the child's")
    root = scratch / "private"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(3000):  # past the recursion limit and past PATH_MAX
        os.mkdir("d", dir_fd=fd)
        fd = _descend(fd)
    os.symlink(str(outside), "link", dir_fd=fd)
    with os.fdopen(os.open("f", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd), "w") as fh:
        fh.write("x")
    os.fchmod(fd, 0o500)  # a folder its child made unwritable
    os.close(fd)
    (root / "locked").mkdir(mode=0o000)
    assert remove_tree(str(root)) is True
    assert not root.exists()
    assert (outside / "keep.txt").read_text() == "not the child's"
    assert remove_tree(str(root)) is True  # already gone: nothing to do


def _descend(fd: int) -> int:
    child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    return child


def test_a_deep_tree_left_by_the_child_neither_loses_the_result_nor_stays(monkeypatch):
    """Without the sandbox (the tmpfs then is not there) the private folder is on disk: a
    3,000-deep chain made cleanup raise RecursionError, lose the valid result and keep failing."""
    monkeypatch.setenv("AUDIT_SANDBOX", "none")
    root = tempfile.mkdtemp(prefix="deep-tree-test-")
    monkeypatch.setattr(tempfile, "tempdir", root)
    try:
        doc = run_engine({"behaviour": "deep-tree", "depth": 3000}, timeout_s=60, on_event=lambda e: None,
                         _entry=[str(FAKE_ENTRY)])
        assert doc["depth"] == 3000
        assert [p for p in os.listdir(root) if p.startswith("audit-engine-")] == []
    finally:
        remove_tree(root)


def test_the_worker_says_loudly_when_it_runs_as_root(caplog, monkeypatch):
    from workers import signals

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with caplog.at_level("WARNING"):
        signals.warn_if_root()
    assert any(r.levelname in ("WARNING", "CRITICAL") and "root" in r.getMessage() for r in caplog.records)
    assert any("65534" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    caplog.clear()
    signals.warn_if_root()
    assert not caplog.records


def test_a_runaway_line_is_refused_and_reading_stays_linear():
    from workers.engine.errors import EngineFailure
    from workers.engine.supervise import MAX_LINE_BYTES, _Lines

    with pytest.raises(EngineFailure) as err:
        run_engine({"behaviour": "huge-line", "bytes": MAX_LINE_BYTES + (4 << 20)}, timeout_s=60,
                   on_event=lambda e: None, _entry=[str(FAKE_ENTRY)])
    assert err.value.kind == "bad-output" and "line over" in err.value.message

    # a line just under the cap in 4 KiB reads: the old reader re-split the growing buffer on
    # every read (~30 GB scanned for this one, tens of seconds); a linear one takes milliseconds
    import time

    reader, chunk = _Lines(), b"x" * 4096
    started = time.process_time()
    for _ in range((MAX_LINE_BYTES - 8192) // len(chunk)):
        assert reader.feed(chunk) == []
    lines = reader.feed(b'"}\n')
    assert time.process_time() - started < 5.0
    assert len(lines) == 1 and len(lines[0]) > MAX_LINE_BYTES - 16384


@pytest.mark.skipif(not AS_ROOT, reason="the staging is a root worker's")
def test_a_root_worker_that_cannot_stage_says_what_to_do(monkeypatch):
    """A container's root usually lacks CAP_SYS_ADMIN: the staging's unshare fails. The audit fails
    with what to do, not an internal error, and the worker's start probe says the same."""
    from workers.engine import launch as launch_module
    from workers.engine.errors import EngineFailure
    from workers.engine.sandbox import _probe

    def unshare_refused(flags):
        import ctypes
        import errno

        ctypes.set_errno(errno.EPERM)
        return -1

    monkeypatch.setattr(launch_module, "_UNSHARE", unshare_refused)
    with pytest.raises(EngineFailure) as err:
        run_engine({"behaviour": "ok"}, timeout_s=30, on_event=lambda e: None, _entry=[str(FAKE_ENTRY)])
    assert "CAP_SYS_ADMIN" in err.value.message and "unprivileged user" in err.value.message
    _probe.cache_clear()
    try:
        assert "CAP_SYS_ADMIN" in _probe("bwrap", "/usr/bin/bwrap")
    finally:
        _probe.cache_clear()
