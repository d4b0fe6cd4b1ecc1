"""The bubblewrap sandbox the engine child runs in (``AUDIT_SANDBOX=bwrap``, the default; see
``bwrap_argv`` and docs/ARCHITECTURE.md, "What the sandbox isolates and what it does not").

New user, PID, network (loopback only), IPC, UTS and cgroup namespaces; uid/gid 65534 with no
capabilities and no new privileges, and never host root (a root worker starts it as host uid
65534); a read-only view of the system libraries, the Python installation, the engine's own
code and this audit's upload and dataset only; read-only /proc and /dev; size-limited nosuid,
nodev tmpfs mounts as the only writable places (the private folder, /dev/shm); a seccomp
filter (libseccomp through ``pyseccomp``) that refuses the kernel interfaces a model never
needs. ``AUDIT_SANDBOX=none`` turns it off, and every result then says so
(``result["sandbox"]``). Running the child is workers/engine/supervise.py's.
"""
from __future__ import annotations

import errno
import functools
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from workers.engine.launch import GIB, REPO_ROOT, Staging, child_env, idmap_userns, preexec
from workers.engine.private_dirs import private_dir_prefix, remove_tree

# ---------------------------------------------------------------------------------------------
# The bubblewrap sandbox
# ---------------------------------------------------------------------------------------------

SANDBOX_ENV = "AUDIT_SANDBOX"
SANDBOX_MODES = ("bwrap", "none")
SANDBOX_UID = SANDBOX_GID = 65534  # "nobody" inside the sandbox's user namespace
# A worker running as root starts bubblewrap as this host user (and group), so the child is an
# unprivileged user on the host as well as inside: a kernel check that bypasses the namespace
# (a /proc/sys file, a core_pattern helper, a setuid file left behind) sees nobody, not root.
HOST_UID_ENV, HOST_GID_ENV = "AUDIT_SANDBOX_HOST_UID", "AUDIT_SANDBOX_HOST_GID"
DEFAULT_HOST_ID = 65534
# The child's writable places are tmpfs mounts inside its own mount namespace (nosuid, nodev,
# size-limited, gone with it, never visible on the host). They hold pages in memory (or swap).
PRIVATE_BYTES_ENV, DEFAULT_PRIVATE_BYTES = "AUDIT_ENGINE_PRIVATE_BYTES", 8 * GIB
SHM_BYTES_ENV, DEFAULT_SHM_BYTES = "AUDIT_ENGINE_SHM_BYTES", 1 * GIB
# the device nodes every program may use; nothing else of the host's /dev (GPU nodes aside)
DEV_NODES = ("null", "zero", "full", "random", "urandom")
# folders a root worker's launch may cover with its staging tmpfs (see Staging)
STAGE_MOUNT_CANDIDATES = ("/mnt", "/media", "/srv", "/opt", "/var/tmp", "/tmp")
BWRAP_ENV = "AUDIT_BWRAP"  # path of the bwrap binary (default: found on PATH)
# the system's libraries and tools, read-only (symlinks such as /lib -> usr/lib are bound as
# what they point at, which is also read-only)
SYSTEM_RO = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
# what the dynamic loader and the C library read from /etc; nothing else of /etc (no
# passwd, no hosts, no credentials a deployment keeps there)
ETC_RO = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime",
          "/etc/os-release")
# the hardware description torch's cpuinfo, NVML and the RAPL meter read (what Flatpak binds)
SYS_RO = ("/sys/block", "/sys/bus", "/sys/class", "/sys/dev", "/sys/devices")
# NVIDIA user-space driver libraries a CUDA process opens (libcuda loads the others)
NVIDIA_LIB_PATTERNS = ("libcuda.so*", "libnvidia-ml.so*", "libnvidia-ptxjitcompiler.so*", "libnvidia-nvvm.so*",
                       "libnvidia-gpucomp.so*", "libcudadebugger.so*")
NVIDIA_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                   "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/wsl/lib")
PROBE_TIMEOUT_S = 60.0

# Syscalls a model has no business making, refused with EPERM (the list follows Flatpak's and
# Docker's default profiles). Everything else is allowed: torch, onnxruntime and the CUDA
# driver use a wide and changing set, so an allow-list would break them on the next release.
SECCOMP_DENY = (
    # the kernel's own administration
    "syslog", "acct", "reboot", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "quotactl", "lookup_dcookie", "uselib", "nfsservctl", "vhangup", "pivot_root", "chroot",
    # new namespaces and mounts (bwrap's --disable-userns covers user namespaces too)
    "unshare", "setns", "mount", "umount2", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr",
    # inspecting or changing other processes, the kernel keyring, large attack surfaces
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "bpf", "userfaultfd",
    "add_key", "request_key", "keyctl", "open_by_handle_at", "name_to_handle_at", "fanotify_init",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
TIOCSTI = 0x5412
TIOCLINUX = 0x541C


class SandboxUnavailable(RuntimeError):
    """The sandbox the deployment asked for cannot be built on this host."""


def sandbox_mode(environ: dict | None = None) -> str:
    environ = os.environ if environ is None else environ
    mode = (environ.get(SANDBOX_ENV) or "bwrap").strip().lower()
    if mode not in SANDBOX_MODES:
        raise SandboxUnavailable(f"{SANDBOX_ENV}={mode!r} is not one of {', '.join(SANDBOX_MODES)}")
    return mode


def bwrap_path(environ: dict | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    return environ.get(BWRAP_ENV) or shutil.which("bwrap")


def _existing(paths: Iterable[str]) -> list[str]:
    return [p for p in paths if p and os.path.lexists(p)]


def _env_bytes(name: str, default: int, environ: dict) -> int:
    try:
        return max(1 << 20, int(environ.get(name) or default))
    except ValueError:
        raise SandboxUnavailable(f"{name}={environ.get(name)!r} is not a number of bytes") from None


def python_roots() -> list[str]:
    """The Python installation and the virtual environment the child's interpreter needs."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(os.path.realpath(sys.executable)).parents[1])}
    return sorted(r for r in roots if r and os.path.isdir(r) and r != "/")


def engine_code_paths() -> list[str]:
    """The engine package and the package file above it: the child imports nothing else of
    ours (docs/ENGINE_INTERFACE.md), so the web app, its settings and the rest of the
    checkout stay out of sight."""
    engine_dir = Path(__file__).resolve().parent
    return _existing([str(engine_dir.parent / "__init__.py"), str(engine_dir)])


def gpu_binds(dev_dir: str = "/dev", lib_dirs: Sequence[str] = NVIDIA_LIB_DIRS,
              already_visible: Sequence[str] = SYSTEM_RO, *, staging: Staging | None = None) -> list[str]:
    """bwrap arguments that give the child the NVIDIA device nodes and driver libraries and
    nothing else of /dev: ``/dev/nvidia*`` and ``/dev/nvidia-caps`` (device access allowed), and
    each driver library not already inside a read-only system folder (through ``staging``)."""
    staging = staging or Staging()
    args: list[str] = []
    for node in sorted(glob.glob(os.path.join(glob.escape(dev_dir), "nvidia*"))):
        args += staging.dev(node, "/dev/" + os.path.basename(node))
    for lib_dir in lib_dirs:
        for pattern in NVIDIA_LIB_PATTERNS:
            for lib in sorted(glob.glob(os.path.join(glob.escape(lib_dir), pattern))):
                if any(lib == root or lib.startswith(root.rstrip("/") + "/") for root in already_visible):
                    continue
                args += staging.ro(lib)
    return args


def _seccomp_program() -> bytes | None:
    """The compiled BPF of SECCOMP_DENY, or None where libseccomp is not available."""
    try:
        import pyseccomp as seccomp  # noqa: PLC0415 - optional, only the worker needs it
    except (ImportError, OSError):
        return None
    flt = seccomp.SyscallFilter(seccomp.ALLOW)  # other architectures' syscalls: killed (libseccomp's default)
    eperm = seccomp.ERRNO(errno.EPERM)
    for name in SECCOMP_DENY:
        try:
            flt.add_rule(eperm, name)
        except (OSError, ValueError, RuntimeError):
            continue  # a syscall this kernel/libseccomp does not know
    # namespaces through clone(); clone3 passes its flags in memory a filter cannot read, so
    # it says "not implemented" and the C library falls back to clone
    for flag in CLONE_NAMESPACE_FLAGS:
        flt.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # typing into the controlling terminal of someone else
    for request in (TIOCSTI, TIOCLINUX):
        flt.add_rule(eperm, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    fd = os.memfd_create("audit-seccomp", 0)
    try:
        with os.fdopen(os.dup(fd), "w+b") as fh:
            flt.export_bpf(fh)
            fh.flush()
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def seccomp_program() -> bytes | None:
    try:
        return _seccomp_program()
    except Exception:  # noqa: BLE001 - a broken libseccomp: no filter, and the result says so
        return None


@dataclass
class Launch:
    """What to start: ``argv`` with ``pass_fds`` open in the parent until it has started."""

    argv: list[str]
    mode: str
    detail: str
    pass_fds: tuple[int, ...] = ()
    _owned: list[int] = field(default_factory=list)
    # (uid, gid) a root worker starts bubblewrap as; None: as the worker itself
    host_ids: tuple[int, int] | None = None
    staging: Staging = field(default_factory=Staging)

    def close(self) -> None:
        for fd in self._owned:
            try:
                os.close(fd)
            except OSError:
                pass
        self._owned.clear()

    def __enter__(self) -> "Launch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self) -> dict:
        return {"mode": self.mode, "detail": self.detail}

    def popen_kwargs(self, limits: dict | None = None) -> dict:
        """What Popen needs beyond argv, env and pipes: the descriptors, the host user to run
        as (set before ``preexec_fn`` runs, so the parent-death signal, which a change of
        credentials clears, is set after it) and the resource limits."""
        return {"pass_fds": self.pass_fds, "cwd": "/",
                "preexec_fn": preexec(limits or {}, os.getpid(), staging=self.staging,  # noqa: PLW1509
                                       host_ids=self.host_ids)}


def _data_fd(data: bytes) -> int:
    fd = os.memfd_create("audit-sandbox-data", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def bwrap_argv(
    inner: Sequence[str],
    *,
    private_dir: str,
    staging: Staging | None = None,
    read_only: Iterable[str] = (),
    device: str = "cpu",
    bwrap: str | None = None,
    seccomp_fd: int | None = None,
    dev_dir: str = "/dev",
    gpu_lib_dirs: Sequence[str] = NVIDIA_LIB_DIRS,
    environ: dict | None = None,
) -> list[str]:
    """The bwrap command line that runs ``inner`` in the sandbox.

    ``read_only`` are the only things of the host's files beyond the system, Python and the
    engine code that the child sees (the upload, the dataset), each at its own path (through
    ``staging`` where a root worker stages them, see Staging).
    ``private_dir`` is, inside, a size-limited tmpfs (nosuid, nodev, mode 0700): the only
    writable place besides a bounded /dev/shm; nothing written there reaches the host's disk.
    The engine (``run_engine``) and the boundary tests build the command with this one
    function, so the tests attack exactly what production runs.
    """
    environ = os.environ if environ is None else environ
    staging = staging or Staging()
    bwrap = bwrap or bwrap_path(environ)
    if not bwrap:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    private_bytes = _env_bytes(PRIVATE_BYTES_ENV, DEFAULT_PRIVATE_BYTES, environ)
    shm_bytes = _env_bytes(SHM_BYTES_ENV, DEFAULT_SHM_BYTES, environ)
    args = [
        bwrap,
        "--unshare-all",  # user, pid, net (loopback only), ipc, uts, cgroup
        "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--disable-userns",  # no nested user namespace (and so no new capabilities) inside
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--hostname", "audit-sandbox",
    ]
    for path in _existing(SYSTEM_RO):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += staging.ro(path)
    for path in _existing(ETC_RO) + _existing(SYS_RO) + python_roots() + engine_code_paths():
        args += staging.ro(path)
    # the deployment's own trusted modules (AUDIT_ARCHITECTURE_MODULES) and libraries it adds
    for var in ("PYTHONPATH", "LD_LIBRARY_PATH"):
        for path in (environ.get(var) or "").split(os.pathsep):
            if path and os.path.isabs(path) and os.path.exists(path) and os.path.realpath(path) != REPO_ROOT:
                args += staging.ro(path)
    powercap = environ.get("AUDIT_POWERCAP_ROOT")
    if powercap and os.path.isabs(powercap) and os.path.exists(powercap):
        args += staging.ro(powercap)
    for path in read_only:
        if path and os.path.isabs(path) and os.path.exists(path):
            args += staging.own(path)
    # /proc of its own PID namespace, read-only: no /proc/sys, /proc/sysrq-trigger, /proc/irq
    # or /proc/bus write reaches the kernel, whoever the kernel thinks is writing
    args += ["--proc", "/proc", "--remount-ro", "/proc"]
    args += _dev_args(shm_bytes)
    if str(device).startswith("cuda"):
        args += gpu_binds(dev_dir, gpu_lib_dirs, staging=staging)
    args += [
        "--remount-ro", "/dev",
        "--perms", "0700", "--size", str(private_bytes), "--tmpfs", private_dir,
        "--chdir", private_dir,
        "--setenv", "USER", "nobody", "--setenv", "LOGNAME", "nobody",
        "--remount-ro", "/",  # the sandbox's own root (a tmpfs bwrap made): no writing there either
    ]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args + ["--", *inner]


def _dev_args(shm_bytes: int) -> list[str]:
    """A /dev of the few nodes every program uses, read-only once built (bwrap's own ``--dev``
    would need a second user namespace in which the sandbox user is uid 0), with a bounded
    /dev/shm for the semaphores and shared memory of Python's multiprocessing."""
    args = ["--perms", "0755", "--tmpfs", "/dev"]
    for node in DEV_NODES:
        if os.path.exists(f"/dev/{node}"):
            args += ["--dev-bind", f"/dev/{node}", f"/dev/{node}"]  # world-accessible: never staged
    args += ["--symlink", "/proc/self/fd", "/dev/fd"]
    for n, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{n}", f"/dev/{name}"]
    return args + ["--perms", "1777", "--size", str(shm_bytes), "--tmpfs", "/dev/shm"]


def stage_mount_point() -> str:
    """Where a root worker's launch mounts its staging tmpfs, in its own mount namespace only:
    an existing folder directly under / (all of whose host contents the launch then no longer
    needs), so the sandbox user can reach it whatever TMPDIR and the private folder are."""
    for path in STAGE_MOUNT_CANDIDATES:
        if os.path.isdir(path) and not os.path.islink(path):
            return path
    raise SandboxUnavailable(f"none of {', '.join(STAGE_MOUNT_CANDIDATES)} exists to stage the sandbox's files on")


def sandbox_host_ids(environ: dict | None = None) -> tuple[int, int] | None:
    """The host uid and gid a root worker starts the sandbox as; None when the worker is not
    root (the sandbox then runs as the worker's own unprivileged user)."""
    if os.geteuid() != 0:
        return None
    environ = os.environ if environ is None else environ
    try:
        uid = int(environ.get(HOST_UID_ENV) or DEFAULT_HOST_ID)
        gid = int(environ.get(HOST_GID_ENV) or DEFAULT_HOST_ID)
    except ValueError:
        raise SandboxUnavailable(f"{HOST_UID_ENV}/{HOST_GID_ENV} must be numbers") from None
    if uid == 0 or gid == 0:
        raise SandboxUnavailable(f"{HOST_UID_ENV}/{HOST_GID_ENV} may not be 0: the sandbox never runs as host root")
    return uid, gid


def sandboxed(
    inner: Sequence[str],
    *,
    private_dir: str,
    read_only: Iterable[str] = (),
    device: str = "cpu",
    mode: str | None = None,
    **kwargs,
) -> Launch:
    """``inner`` wrapped in the sandbox the deployment asks for (AUDIT_SANDBOX): a Launch to
    give to Popen (argv, pass_fds) and then close."""
    mode = mode or sandbox_mode()
    read_only = list(read_only)
    if mode == "none":
        return Launch(list(inner), "none", f"{SANDBOX_ENV}=none: the engine ran without a sandbox "
                                           "(a scrubbed environment and resource limits only)")
    host_ids = sandbox_host_ids(kwargs.get("environ"))
    program = seccomp_program()
    owned: list[int] = []
    seccomp_fd = None
    try:
        if program:
            seccomp_fd = _data_fd(program)
            owned.append(seccomp_fd)
        staging = Staging(stage_mount_point() if host_ids else None)
        own = [p for p in read_only if p and os.path.isabs(p) and os.path.exists(p)]
        if host_ids and own:
            owner = os.stat(own[0])
            try:
                staging.userns_fd = idmap_userns((owner.st_uid, owner.st_gid), host_ids)
                owned.append(staging.userns_fd)
            except (OSError, subprocess.SubprocessError):
                pass  # no idmapped mount: the child reads this audit's files by their own modes
        argv = bwrap_argv(inner, private_dir=private_dir, staging=staging, read_only=read_only, device=device,
                          seccomp_fd=seccomp_fd, **kwargs)
    except BaseException:
        for fd in owned:
            os.close(fd)
        raise
    host_user = (f"host uid/gid {host_ids[0]}/{host_ids[1]} (the worker is root)" if host_ids
                 else "the worker's own unprivileged host user")
    detail = ("bubblewrap: user, pid, network (loopback only), ipc, uts and cgroup namespaces; "
              f"uid/gid {SANDBOX_UID} without capabilities, {host_user}; read-only upload, Python and "
              "engine code, read-only /proc and /dev; writable size-limited private tmpfs and /dev/shm only; "
              + ("seccomp filter on" if program else "no seccomp filter (libseccomp/pyseccomp unavailable)")
              + ("; NVIDIA device nodes bound" if str(device).startswith("cuda") else ""))
    return Launch(argv, "bwrap", detail, pass_fds=tuple(owned), _owned=owned, host_ids=host_ids, staging=staging)


@functools.lru_cache(maxsize=4)
def _probe(mode: str, bwrap: str | None) -> str | None:
    if mode == "none":
        return None
    if not bwrap:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    private_dir = tempfile.mkdtemp(prefix=private_dir_prefix() + "probe-")
    code = ("import os, socket, workers.engine.child; "
            "assert os.getuid() != 0, 'uid 0 inside'; "
            "assert all(line.split()[1] != '0' for line in open('/proc/self/uid_map')), 'maps to host uid 0'; "
            "open(os.path.join(os.getcwd(), 'w'), 'w').write('ok'); print('sandbox-ok')")
    launch = None
    try:
        launch = sandboxed([sys.executable, "-c", code], private_dir=private_dir, mode=mode, bwrap=bwrap)
        with launch:
            out = subprocess.run(launch.argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                                 env=child_env(private_dir), **launch.popen_kwargs())
    except (OSError, subprocess.SubprocessError, SandboxUnavailable) as exc:
        return f"bubblewrap could not be started: {launch_problem(launch, exc)}"
    finally:
        remove_tree(private_dir)
    if out.returncode != 0 or "sandbox-ok" not in out.stdout:
        tail = "\n".join((out.stderr or "").strip().splitlines()[-5:])
        return f"a test run in the bubblewrap sandbox failed (exit {out.returncode}): {tail}"
    return None


def launch_problem(launch: Launch | None, exc: BaseException) -> str:
    """Why a launch failed, in words a deployer can act on. A root worker's launch stages the
    sandbox's files in a mount namespace of its own before dropping to the sandbox user: that
    needs root's CAP_SYS_ADMIN, which a container's root usually lacks."""
    text = str(exc)
    if launch is not None and launch.host_ids is not None and isinstance(exc, subprocess.SubprocessError):
        text += (" (a root worker prepares the sandbox's files in a mount namespace of its own, which needs "
                 "CAP_SYS_ADMIN, then starts bubblewrap as host uid "
                 f"{launch.host_ids[0]}, which needs unprivileged user namespaces: run the worker as an "
                 "unprivileged user instead, as the Docker image does)")
    return text


def check_sandbox(environ: dict | None = None) -> str | None:
    """None when the configured sandbox works here; otherwise why not, in words a deployer
    can act on. The worker refuses to start on a non-None answer (workers/signals.py)."""
    try:
        mode = sandbox_mode(environ)
    except SandboxUnavailable as exc:
        return str(exc)
    problem = _probe(mode, bwrap_path(environ))
    if problem:
        return (f"The engine sandbox cannot be built on this host: {problem}. Install bubblewrap and allow "
                f"unprivileged user namespaces (in Docker: the worker's security_opt in docker-compose.yml), "
                f"or set {SANDBOX_ENV}=none to run models without a sandbox (every result then records it).")
    return None
