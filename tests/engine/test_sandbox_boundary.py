"""The engine's sandbox as an attacker meets it.

Code runs inside through the sandbox's own entry point: the very bwrap command line the
engine builds (``workers.engine.sandbox.sandboxed``), with ``python -c PAYLOAD`` where the
engine puts ``python -m workers.engine child``, started with the child's environment. That
is what an exploit in a loader, tokenizer or onnxruntime would hold. Each payload prints one
JSON object of what it tried and what happened; the tests judge it outside.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from workers.engine.errors import EngineFailure
from workers.engine.launch import child_env
from workers.engine.private_dirs import private_dir_prefix, remove_tree
from workers.engine.sandbox import SANDBOX_UID, bwrap_argv, check_sandbox, gpu_binds, sandboxed, seccomp_program
from workers.engine.supervise import run_engine

REPO = Path(__file__).resolve().parents[2]
FAKE_NVML = Path(__file__).with_name("fake_pynvml.py")


def run_inside(payload: str, tmp_path: Path, *, read_only=(), device="cpu", extra_env=None, **kwargs) -> dict:
    """Run ``payload`` as the engine child would run: the private folder made and removed the
    way run_engine does, the same launch (staging and host user of a root worker included)."""
    private = tempfile.mkdtemp(prefix=private_dir_prefix())
    env = child_env(private)
    env.update(extra_env or {})
    try:
        with sandboxed([sys.executable, "-c", textwrap.dedent(payload)], private_dir=private,
                       read_only=[str(p) for p in read_only], device=device, mode="bwrap", **kwargs) as launch:
            out = subprocess.run(launch.argv, env=env, capture_output=True, text=True, timeout=60,
                                 **launch.popen_kwargs())
    finally:
        remove_tree(private)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def storage(tmp_path):
    """A storage root as the web app keeps it: this audit's upload and another team's."""
    root = tmp_path / "storage"
    (root / "models" / "team-a").mkdir(parents=True)
    (root / "models" / "team-b").mkdir(parents=True)
    mine = root / "models" / "team-a" / "mine.safetensors"
    mine.write_bytes(b"this audit's upload")
    other = root / "models" / "team-b" / "theirs.safetensors"
    other.write_bytes(b"another team's model")
    (root / "secret.txt").write_text("do not read")
    return root, mine, other


CONNECT = """
    import errno, json, socket
    def attempt(host, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect((host, port))
            return "connected"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc)) if exc.errno else type(exc).__name__
        finally:
            s.close()
    targets = json.loads(%r)
    print(json.dumps({f"{h}:{p}": attempt(h, p) for h, p in targets}))
"""


def _host_address() -> str | None:
    """This machine's address on a real interface (not loopback), where there is one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_no_network_but_its_own_loopback(tmp_path):
    # a service the host's loopback really has, so "refused inside" means something
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            pass  # reachable from the worker
        targets = [["127.0.0.1", port], ["127.0.0.1", 5432], ["127.0.0.1", 6379], ["8.8.8.8", 53],
                   ["1.1.1.1", 443]]
        host = _host_address()
        if host:
            targets.append([host, port])
        result = run_inside(CONNECT % json.dumps(targets), tmp_path)
    finally:
        listener.close()
    assert set(result) == {f"{h}:{p}" for h, p in targets}
    assert "connected" not in result.values(), result
    # loopback is the sandbox's own: nothing listens there (PostgreSQL, Redis, the test's port)
    assert result[f"127.0.0.1:{port}"] == "ECONNREFUSED"
    assert result["127.0.0.1:5432"] == "ECONNREFUSED" and result["127.0.0.1:6379"] == "ECONNREFUSED"
    assert result["8.8.8.8:53"] == "ENETUNREACH" and result["1.1.1.1:443"] == "ENETUNREACH"


def test_sees_its_upload_and_nothing_else_of_the_storage(tmp_path, storage):
    root, mine, other = storage
    payload = f"""
    import json, os
    def read(path):
        try:
            with open(path, "rb") as fh:
                return fh.read().decode()
        except OSError as exc:
            return type(exc).__name__
    def listing(path):
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            return type(exc).__name__
    print(json.dumps({{
        "mine": read({str(mine)!r}), "other": read({str(other)!r}),
        "secret": read({str(root / "secret.txt")!r}),
        "root": listing({str(root)!r}), "team_dir": listing({str(mine.parent)!r}),
        "checkout": listing({str(REPO)!r}), "settings": read({str(REPO / "audit" / "settings.py")!r}),
        "dotenv": read({str(REPO / ".env")!r}),
    }}))
    """
    result = run_inside(payload, tmp_path, read_only=[mine])
    assert result["mine"] == "this audit's upload"
    assert result["other"] == "FileNotFoundError"
    assert result["secret"] == "FileNotFoundError"
    # the storage root and the team folder hold only the path down to this one upload
    assert result["root"] == ["models"]
    assert result["team_dir"] == ["mine.safetensors"]
    # of the checkout only the engine package (and the Python environment, when it lives there)
    assert "audit" not in result["checkout"] and "workers" in result["checkout"]
    assert result["settings"] == "FileNotFoundError" and result["dotenv"] == "FileNotFoundError"


def test_cannot_read_the_workers_environment_or_processes(tmp_path, monkeypatch):
    marker = "worker-secret-7f3a91"
    monkeypatch.setenv("AUDIT_TEST_SECRET_TOKEN", marker)  # a credential the worker holds
    payload = f"""
    import json, os
    marker = {marker[::-1]!r}[::-1]  # not spelled out in this payload's own command line
    found, readable = [], []
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{{pid}}/{{name}}", "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            readable.append(pid)
            if marker.encode() in data:
                found.append(f"{{pid}}/{{name}}")
    try:
        open("/proc/{os.getpid()}/environ", "rb").read()
        parent = "read"
    except OSError as exc:
        parent = type(exc).__name__
    print(json.dumps({{"found": found, "pids": sorted(set(readable), key=int), "parent": parent,
                      "ppid": os.getppid(), "own_env": marker in repr(dict(os.environ))}}))
    """
    result = run_inside(payload, tmp_path)
    assert result["found"] == [] and result["own_env"] is False
    # its own PID namespace: bubblewrap's init (1) and the payload; the worker is not there
    assert set(result["pids"]) <= {"1", "2", "3"}, result["pids"]
    assert result["ppid"] == 1
    assert os.getpid() <= 3 or result["parent"] == "FileNotFoundError"


def test_writes_only_into_its_private_folder(tmp_path, storage):
    root, mine, _ = storage
    # harmless names only, removed afterwards: should the sandbox ever fail open, this test
    # must not damage the machine it runs on
    probe = f"sandbox-write-probe-{uuid.uuid4().hex}.txt"
    targets = {
        "private": probe,  # relative: its working folder, the private folder
        "code": str(REPO / "workers" / "engine" / probe),
        "upload": str(mine),
        "upload_dir": str(mine.parent / probe),
        "storage_root": str(root / probe),
        "tmp": f"/tmp/{probe}",
        "sandbox_root": f"/{probe}",
        "python": os.path.join(sys.prefix, probe),
        "etc": f"/etc/{probe}",
    }
    payload = f"""
    import json
    out = {{}}
    for name, path in {targets!r}.items():
        try:
            with open(path, "ab") as fh:
                fh.write(b"x")
            out[name] = "written"
        except OSError as exc:
            out[name] = type(exc).__name__
    print(json.dumps(out))
    """
    try:
        result = run_inside(payload, tmp_path, read_only=[mine])
    finally:
        leftovers = [p for name, p in targets.items() if name not in ("private", "upload") and os.path.exists(p)]
        for path in leftovers:
            os.unlink(path)
    assert leftovers == []
    assert result.pop("private") == "written"
    assert set(result.values()) <= {"PermissionError", "OSError", "FileNotFoundError"}, result
    assert result["upload"] in ("OSError", "PermissionError")  # EROFS (read-only bind) or EACCES (not its file)
    assert mine.read_bytes() == b"this audit's upload"


def test_unprivileged_and_filtered(tmp_path):
    payload = """
    import ctypes, errno, json, os
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    libc = ctypes.CDLL(None, use_errno=True)
    def call(fn, *args):
        rc = fn(*args)
        return "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), "?")
    CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
    print(json.dumps({
        "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(), "groups": os.getgroups(),
        "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
        "unshare_user": call(libc.unshare, CLONE_NEWUSER), "unshare_net": call(libc.unshare, CLONE_NEWNET),
        "ptrace_attach_1": call(libc.ptrace, 16, 1, 0, 0),
        "mount": call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None),
    }))
    """
    result = run_inside(payload, tmp_path)
    assert result["uid"] == result["euid"] == SANDBOX_UID != 0
    assert result["gid"] == SANDBOX_UID and 0 not in result["groups"]
    assert int(result["cap_eff"], 16) == 0 and int(result["cap_bnd"], 16) == 0
    assert result["no_new_privs"] == "1"
    assert result["unshare_user"] != "ok" and result["unshare_net"] != "ok" and result["mount"] != "ok"
    assert result["ptrace_attach_1"] != "ok"
    if seccomp_program() is not None:
        assert result["seccomp"] == "2"  # filter mode
        assert result["unshare_user"] == "EPERM" and result["ptrace_attach_1"] == "EPERM"


def test_gpu_binds_only_the_nvidia_nodes_and_driver_libraries(tmp_path):
    dev = tmp_path / "dev"
    (dev / "nvidia-caps").mkdir(parents=True)
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "sda", "mem", "kmsg", "nvme0n1"):
        (dev / name).write_text("")
    libs = tmp_path / "driver"
    libs.mkdir()
    for name in ("libcuda.so.1", "libcuda.so.550.54.15", "libnvidia-ml.so.1", "libssl.so.3"):
        (libs / name).write_text("")
    args = gpu_binds(str(dev), [str(libs)], already_visible=["/usr"])
    dev_binds = [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == "--dev-bind"]
    assert sorted(dest for _, dest in dev_binds) == ["/dev/nvidia-caps", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                                     "/dev/nvidia0", "/dev/nvidiactl"]
    lib_binds = sorted(Path(args[i + 1]).name for i, a in enumerate(args) if a == "--ro-bind")
    assert lib_binds == ["libcuda.so.1", "libcuda.so.550.54.15", "libnvidia-ml.so.1"]
    # libraries already inside a read-only system folder are not bound twice
    assert gpu_binds(str(dev), [str(libs)], already_visible=[str(tmp_path)]) == [
        a for pair in (("--dev-bind", s, d) for s, d in dev_binds) for a in pair]
    # a CPU audit gets none of them
    cpu = bwrap_argv(["true"], private_dir=str(tmp_path), device="cpu", dev_dir=str(dev), gpu_lib_dirs=[str(libs)])
    assert not any(a.startswith("/dev/nvidia") for a in cpu) and str(libs / "libcuda.so.1") not in cpu
    gpu = bwrap_argv(["true"], private_dir=str(tmp_path), device="cuda:0", dev_dir=str(dev),
                     gpu_lib_dirs=[str(libs)])
    assert "/dev/nvidia0" in gpu and "/dev/sda" not in gpu and str(libs / "libssl.so.3") not in gpu


def test_gpu_path_runs_the_engines_nvml_code_inside(tmp_path):
    """On a cuda audit the child sees the NVIDIA nodes (here stand-ins) and its NVML code works
    (against the fake NVML, bound read-only like any file the child is given)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "sda"):
        (dev / name).write_text("")
    payload = f"""
    import importlib.util, json, os, sys
    spec = importlib.util.spec_from_file_location("fake_pynvml", {str(FAKE_NVML)!r})
    fake = importlib.util.module_from_spec(spec); sys.modules["fake_pynvml"] = fake; spec.loader.exec_module(fake)
    gpu = fake.FakeGPU("GPU-bbbb", name="NVIDIA H100 80GB HBM3", power_limit_w=700.0)
    sys.modules["pynvml"] = fake.make_nvml([gpu])
    from workers.engine.fingerprint import host_fingerprint
    fp = host_fingerprint("cuda")
    print(json.dumps({{"gpu": fp.get("gpu"), "dev": sorted(os.listdir("/dev"))}}))
    """
    result = run_inside(payload, tmp_path, read_only=[FAKE_NVML], device="cuda", dev_dir=str(dev),
                        gpu_lib_dirs=[], extra_env={"CUDA_VISIBLE_DEVICES": "GPU-bbbb"})
    assert result["gpu"]["uuid"] == "GPU-bbbb" and result["gpu"]["power_limit_w"] == 700.0
    assert {"nvidia0", "nvidiactl", "nvidia-uvm"} <= set(result["dev"])
    assert "sda" not in result["dev"]


def test_real_engine_child_profiles_through_the_sandbox(mlp_safetensors):
    from tests.engine import models as m

    request = {"command": "profile", "path": str(mlp_safetensors), "batch_sizes": [1], "options": m.FAST_OPTIONS}
    doc = run_engine(request, timeout_s=120, on_event=lambda e: None)
    assert doc["variants"][0]["status"] == "succeeded"
    assert doc["variants"][0]["measurements"][0]["latency_ms_p50"] > 0
    assert doc["sandbox"]["mode"] == "bwrap" and "uid/gid 65534" in doc["sandbox"]["detail"]


def test_opt_out_is_recorded_in_the_result(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_SANDBOX", "none")
    entry = str(Path(__file__).with_name("fake_child_entry.py"))
    doc = run_engine({"behaviour": "ok"}, timeout_s=30, on_event=lambda e: None, _entry=[entry])
    assert doc["sandbox"]["mode"] == "none" and "without a sandbox" in doc["sandbox"]["detail"]


def test_a_sandbox_that_cannot_be_built_is_refused_with_a_reason(tmp_path, monkeypatch):
    missing = {"AUDIT_BWRAP": str(tmp_path / "no-bwrap-here"), "PATH": "/usr/bin:/bin"}
    problem = check_sandbox(missing)
    assert problem and "cannot be built" in problem and "AUDIT_SANDBOX=none" in problem
    assert "not one of" in check_sandbox({"AUDIT_SANDBOX": "chroot"})
    assert check_sandbox({"AUDIT_SANDBOX": "none", "AUDIT_BWRAP": str(tmp_path / "no-bwrap-here")}) is None
    assert check_sandbox() is None  # this machine has bubblewrap
    # and the engine itself fails clearly rather than running unsandboxed
    monkeypatch.setenv("AUDIT_BWRAP", str(tmp_path / "no-bwrap-here"))
    with pytest.raises(EngineFailure) as err:
        run_engine({"behaviour": "ok"}, timeout_s=30, on_event=lambda e: None,
                   _entry=[str(Path(__file__).with_name("fake_child_entry.py"))])
    assert "no-bwrap-here" in err.value.message


def test_onnx_quantisation_writes_nothing_beside_the_read_only_upload(tmp_path):
    """onnxruntime's quantiser writes a shape-inferred copy beside its input; the upload is
    read-only in the sandbox, so the recipe hands it a link in the variant's folder."""
    from tests.engine import models as m

    folder = tmp_path / "storage"
    model = m.export_onnx(folder / "cnn.onnx", "small-cnn", m.CNN_CONFIG)
    request = {"command": "profile", "path": str(model), "batch_sizes": [1],
               "recipes": ["baseline", "ort-int8-dynamic"], "options": m.FAST_OPTIONS}
    doc = run_engine(request, timeout_s=120, on_event=lambda e: None)
    assert [(v["recipe"], v["status"]) for v in doc["variants"]] == [("baseline", "succeeded"),
                                                                    ("ort-int8-dynamic", "succeeded")]
    assert sorted(p.name for p in folder.iterdir()) == ["cnn.onnx"]
