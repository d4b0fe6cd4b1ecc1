"""The sandboxed child: protocol, failures, limits, environment, heartbeat."""
import os
import sys
import time
from pathlib import Path

import pytest

from workers.engine.errors import EngineFailure
from workers.engine.launch import child_env
from workers.engine.supervise import run_engine

FAKE = [str(Path(__file__).with_name("fake_child_entry.py"))]
REPO = Path(__file__).resolve().parents[2]


def run(request, **kw):
    kw.setdefault("timeout_s", 20)
    kw.setdefault("on_event", lambda e: None)
    return run_engine(request, _entry=FAKE, **kw)


def test_result_and_progress_survive_noise_on_stdout():
    events = []
    result = run({"behaviour": "ok"}, on_event=events.append)
    assert result["schema_version"] == 1
    assert result["nan"] is None  # non-finite floats become null
    assert events == [{"event": "progress", "stage": "measure", "percent": 50.0, "message": "half",
                       "variant": 1, "n_variants": 1}]


def test_load_error_line_becomes_load_error():
    with pytest.raises(EngineFailure) as err:
        run({"behaviour": "load-error"})
    assert err.value.kind == "load-error"
    assert "no such file" in err.value.message


def test_exception_becomes_crash():
    with pytest.raises(EngineFailure) as err:
        run({"behaviour": "crash"})
    assert err.value.kind == "crash"
    assert "RuntimeError: something broke inside" in err.value.message


def test_nonzero_exit_without_error_line_is_crash_with_stderr():
    with pytest.raises(EngineFailure) as err:
        run({"behaviour": "exit-nonzero"})
    assert err.value.kind == "crash"
    assert "the C++ side gave up" in err.value.message


def test_garbage_on_protocol_is_bad_output():
    with pytest.raises(EngineFailure) as err:
        run({"behaviour": "print-garbage"})
    assert err.value.kind == "bad-output"


def test_killed_by_signal():
    with pytest.raises(EngineFailure) as err:
        run({"behaviour": "kill-self"})
    assert err.value.kind == "killed"
    assert "SIGKILL" in err.value.message and "out of memory?" in err.value.message


def _gone(pid, within_s=5.0):
    import psutil

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_child_dies_with_its_parent():
    import subprocess

    code = (
        "import sys; from workers.engine.supervise import run_engine\n"
        "run_engine({'behaviour': 'sleep', 'seconds': 30, 'report_pid': True}, timeout_s=60, _entry=[sys.argv[1]],\n"
        "           on_event=lambda e: print(e['message'], flush=True))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, FAKE[0]], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        int(parent.stdout.readline())  # the child runs (its pid there is the sandbox's own)
        import psutil

        descendants = [p.pid for p in psutil.Process(parent.pid).children(recursive=True)]  # only its run's
        assert descendants
        parent.kill()  # SIGKILL: no finally blocks run in the parent
        parent.wait()
        # PR_SET_PDEATHSIG took it down (the sandbox and the interpreter in it)
        assert all(_gone(pid) for pid in descendants)
    finally:
        parent.kill()
        parent.stdout.close()


def test_timeout_kills_the_whole_process_group():

    import psutil

    events, descendants = [], []

    def on_event(event):
        events.append(event)
        # host pids of everything the run started (inside the sandbox pids are its own): the
        # bubblewrap process and what runs under it, not other children of this test process
        for launcher in psutil.Process().children():
            try:
                if launcher.cmdline()[:1] and launcher.cmdline()[0].endswith("bwrap"):
                    descendants.extend([launcher.pid] + [p.pid for p in launcher.children(recursive=True)])
            except psutil.Error:
                continue  # a child of this process that ended meanwhile

    started = time.monotonic()
    with pytest.raises(EngineFailure) as err:
        run({"behaviour": "sleep", "seconds": 30, "grandchild": True}, timeout_s=1.5, on_event=on_event)
    assert err.value.kind == "timeout"
    assert "exceeded 1.5 s" in err.value.message
    assert time.monotonic() - started < 10
    assert events and len(descendants) >= 3  # bwrap, the child, its grandchild (and bwrap's init)
    assert all(_gone(pid) for pid in descendants)


@pytest.mark.parametrize("behaviour", ["allocate", "raw-memory-error"])
def test_memory_limit_gives_oom(behaviour):
    limit = 512 << 20
    with pytest.raises(EngineFailure) as err:
        run({"behaviour": behaviour, "bytes": 2 * limit}, limits={"memory_bytes": limit})
    assert err.value.kind == "oom"


def test_cpu_time_limit_is_a_timeout():
    with pytest.raises(EngineFailure) as err:
        run({"behaviour": "spin"}, limits={"cpu_seconds": 1})
    assert err.value.kind == "timeout"
    assert "CPU-time" in err.value.message


def test_env_is_scrubbed_and_home_is_private(monkeypatch):
    for name in ("DATABASE_URL", "SECRET_KEY", "CELERY_BROKER_URL", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN",
                 "DB_PASSWORD"):
        monkeypatch.setenv(name, "leak")
    monkeypatch.setenv("AUDIT_CPU_TDP_W", "65")
    result = run({"behaviour": "env"})
    env = set(result["env"])
    assert not env & {"DATABASE_URL", "SECRET_KEY", "CELERY_BROKER_URL", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN",
                      "DB_PASSWORD"}
    assert "AUDIT_CPU_TDP_W" in env
    assert result["home"] == result["tmpdir"]
    assert os.path.realpath(result["home"]) == os.path.realpath(result["cwd"])
    assert result["home"] != os.environ.get("HOME")
    assert str(REPO) in result["pythonpath"].split(os.pathsep)
    assert not os.path.exists(result["cwd"])  # the private folder is removed afterwards


def test_child_env_never_passes_secrets_even_if_allow_listed():
    env = child_env("/tmp/x", {"PATH": "/bin", "PYTHONPATH": "/a", "CUDA_VISIBLE_DEVICES": "0", "FOO": "1"})
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [str(REPO), "/a"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and "FOO" not in env
    assert env["HOME"] == env["TMPDIR"] == "/tmp/x"


def test_on_tick_called_while_child_is_silent():
    ticks = []
    result = run({"behaviour": "sleep", "seconds": 0.8}, tick_s=0.1, on_tick=lambda: ticks.append(time.monotonic()))
    assert result.pop("sandbox")["mode"] == "bwrap"  # the worker's record of what ran it
    assert result == {"slept": 0.8}
    assert len(ticks) >= 4
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.5


def test_result_kept_when_child_hangs_at_exit(monkeypatch):
    from workers.engine import supervise

    monkeypatch.setattr(supervise, "EXIT_GRACE_S", 0.3)
    started = time.monotonic()
    result = run({"behaviour": "result-then-hang"}, timeout_s=20)
    assert result.pop("sandbox")["mode"] == "bwrap"
    assert result == {"done": True}
    assert time.monotonic() - started < 5


def _real_child_available():
    try:
        from workers.engine import profile  # noqa: F401
    except ImportError:
        return False
    return hasattr(profile, "run_request") and (REPO / "workers" / "engine" / "__main__.py").exists()


@pytest.mark.skipif(not _real_child_available(), reason="workers.engine.profile.run_request not written yet")
def test_real_child_missing_model_is_load_error(tmp_path):
    request = {"command": "profile", "path": str(tmp_path / "missing.safetensors"), "format": "auto",
               "device": "cpu", "batch_sizes": [1], "seq_len": None, "recipes": ["baseline"], "dataset": None,
               "options": {"window_s": 0.05, "time_cap_s": 0.2, "idle_s": 0.05}}
    with pytest.raises(EngineFailure) as err:
        run_engine(request, timeout_s=120, on_event=lambda e: None)
    assert err.value.kind == "load-error"
