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

Around the interpreter sits a bubblewrap sandbox (``AUDIT_SANDBOX=bwrap``, the default; see
``bwrap_argv`` and docs/ARCHITECTURE.md, "What the sandbox isolates and what it does not"):
new user, PID, network (loopback only), IPC, UTS and cgroup namespaces; uid/gid 65534 with
no capabilities and no new privileges; a read-only view of the system libraries, the Python
installation, the engine's own code and this audit's upload and dataset only; the private
folder as the one writable place; a seccomp filter (libseccomp through ``pyseccomp``) that
refuses the kernel interfaces a model never needs. ``AUDIT_SANDBOX=none`` turns it off, and
every result then says so (``result["sandbox"]``).
"""
from __future__ import annotations

import ctypes
import errno
import functools
import glob
import json
import os
import re
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from workers.engine.errors import EngineFailure

REPO_ROOT = str(Path(__file__).resolve().parents[2])
GIB = 1 << 30
DEFAULT_MEMORY_BYTES = 16 * GIB
DEFAULT_FILE_BYTES = 16 * GIB
# One line of the child's output (a progress event, or the whole result): larger is refused as
# it arrives. The stored result is bounded tighter after parsing (workers/result_schema.py).
MAX_LINE_BYTES = 16 << 20
# the private folders' name: audit-engine-<worker pid>-<its start time in clock ticks>-<random>;
# the reaper (workers/tasks.py) and each new worker process remove ones whose worker is gone
PRIVATE_DIR_PREFIX = "audit-engine-"
PRIVATE_DIR_RE = re.compile(r"^audit-engine-(\d+)-(\d+)-")
# folders named otherwise (before owners were recorded) go once they are this old
LEGACY_PRIVATE_DIR_AGE_S = 24 * 3600
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
# processes and threads of the sandbox's host user (RLIMIT_NPROC): a fork bomb stops here
MAX_PROCS_ENV, DEFAULT_MAX_PROCS = "AUDIT_ENGINE_MAX_PROCS", 4096
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


@dataclass
class Staging:
    """Where a root worker puts what the sandbox may read before it starts bubblewrap as an
    unprivileged user: each source is bind-mounted (in a mount namespace of the launch's own,
    invisible to the host) at ``<root>/<n>``, a place that user can reach, however private the
    folders above the source are (a 0700 checkout, /root holding the Python installation, the
    storage root). The sandbox user still reads only files whose own modes let others read.
    ``root`` None: no staging (the worker is not root and reaches its own files)."""

    root: str | None = None
    binds: list[tuple[str, str]] = field(default_factory=list)
    # the audit's own files (upload, dataset) are staged through an idmapped mount that shows
    # their owner as the sandbox's host user: the child reads them as the worker could (a 0600
    # safetensors, a 0640 upload), read-only, and nothing else changes owner
    idmapped: set[str] = field(default_factory=set)
    userns_fd: int | None = None

    def ro(self, path: str, dest: str | None = None) -> list[str]:
        return ["--ro-bind", self._source(path), dest or path]

    def own(self, path: str) -> list[str]:
        """This audit's own file or folder, read as its owner would read it (see ``idmapped``)."""
        args = self.ro(path)
        if self.root is not None:
            self.idmapped.add(self.binds[-1][1])
        return args

    def dev(self, path: str, dest: str) -> list[str]:
        """A device node, device access allowed (a staged bind keeps its own mount's flags)."""
        return ["--dev-bind", self._source(path), dest]

    def _source(self, path: str) -> str:
        if self.root is None:
            return path
        staged = f"{self.root}/{len(self.binds)}"
        self.binds.append((path, staged))
        return staged


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
                "preexec_fn": _preexec(limits or {}, os.getpid(), staging=self.staging,  # noqa: PLW1509
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
            staging.userns_fd = idmap_userns((owner.st_uid, owner.st_gid), host_ids)
            owned.append(staging.userns_fd)
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
    try:
        with sandboxed([sys.executable, "-c", code], private_dir=private_dir, mode=mode, bwrap=bwrap) as launch:
            out = subprocess.run(launch.argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                                 env=child_env(private_dir), **launch.popen_kwargs())
    except (OSError, subprocess.SubprocessError, SandboxUnavailable) as exc:
        return f"bubblewrap could not be started: {exc}"
    finally:
        remove_tree(private_dir)
    if out.returncode != 0 or "sandbox-ok" not in out.stdout:
        tail = "\n".join((out.stderr or "").strip().splitlines()[-5:])
        return f"a test run in the bubblewrap sandbox failed (exit {out.returncode}): {tail}"
    return None


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
    limits.setdefault("max_processes", int(os.environ.get(MAX_PROCS_ENV) or DEFAULT_MAX_PROCS))
    return limits


CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x1000, 0x4000, 0x40000


def _load_libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        return libc.unshare, libc.mount, libc.syscall
    except (OSError, AttributeError):
        return None, None, None


_UNSHARE, _MOUNT, _SYSCALL = _load_libc()


def _libc_check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


# x86_64 and aarch64 share these numbers (the generic syscall table)
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = 1, 0o2000000, 4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_IDMAP = 0x1, 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _syscall(*args) -> int:
    rc = _SYSCALL(*args)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def _detached_copy(source: str, userns_fd: int | None) -> int:
    """A detached copy of the mount tree at ``source`` (open_tree), idmapped through
    ``userns_fd`` where given and supported; its descriptor."""
    tree = _syscall(SYS_OPEN_TREE, AT_FDCWD, source.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
    if userns_fd is not None:
        attr = _MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, 0, 0, userns_fd)
        try:
            _syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH | AT_RECURSIVE, ctypes.byref(attr),
                     ctypes.sizeof(attr))
        except OSError:
            pass  # a filesystem without idmapped mounts: the child reads by the files' own modes
    return tree


def _stage(staging: Staging) -> None:
    """In a mount namespace of this (forked, not yet exec'd) process only: a small tmpfs on the
    staging mount point, and each source's mount tree copied into it (see Staging). Runs as
    root, between fork and exec, before the credentials drop. The copies are taken before the
    mount point is covered, so covering it hides none of them."""
    if _UNSHARE is None or _MOUNT is None or _SYSCALL is None:
        raise OSError(errno.ENOSYS, "unshare/mount are not available")
    _libc_check(_UNSHARE(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # nothing mounted here propagates back to the host's namespace
    _libc_check(_MOUNT(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    trees = []
    for source, staged in staging.binds:
        userns = staging.userns_fd if staged in staging.idmapped else None
        trees.append((_detached_copy(source, userns), os.path.isdir(source), staged))
    _libc_check(_MOUNT(b"tmpfs", staging.root.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m"),
                "staging tmpfs")
    for tree, is_dir, staged in trees:
        if is_dir:
            os.mkdir(staged, 0o755)
        else:
            os.close(os.open(staged, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        _syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, staged.encode(), MOVE_MOUNT_F_EMPTY_PATH)
        os.close(tree)


def idmap_userns(owner: tuple[int, int], host: tuple[int, int]) -> int:
    """A user namespace whose uid/gid ``owner`` is the host's ``host`` uid/gid, for idmapped
    mounts (see Staging); its descriptor. Made by a short-lived process that unshares its user
    namespace; root writes the maps."""
    if _UNSHARE is None:
        raise OSError(errno.ENOSYS, "unshare is not available")

    def unshare_user() -> None:
        _libc_check(_UNSHARE(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")

    holder = subprocess.Popen(["sleep", "60"], preexec_fn=unshare_user, stdin=subprocess.DEVNULL,  # noqa: PLW1509
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    try:
        with open(f"/proc/{holder.pid}/uid_map", "w") as fh:
            fh.write(f"{owner[0]} {host[0]} 1\n")
        with open(f"/proc/{holder.pid}/setgroups", "w") as fh:
            fh.write("deny")
        with open(f"/proc/{holder.pid}/gid_map", "w") as fh:
            fh.write(f"{owner[1]} {host[1]} 1\n")
        return os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        holder.kill()
        holder.wait()


def _drop_to(host_ids: tuple[int, int]) -> None:
    uid, gid = host_ids
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() == 0 or os.geteuid() == 0:  # never go on as root
        os._exit(126)


def _preexec(limits: dict, parent_pid: int, *, staging: Staging | None = None,
             host_ids: tuple[int, int] | None = None):
    memory, cpu, fsize = limits.get("memory_bytes"), limits.get("cpu_seconds"), limits.get("file_bytes")
    nproc = limits.get("max_processes")

    def apply() -> None:
        if staging is not None and staging.root is not None:
            _stage(staging)
        if host_ids is not None:
            _drop_to(host_ids)
        # after the credentials change, which clears it
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
        if nproc:
            # counted per host user: ignored by the kernel for root (AUDIT_SANDBOX=none as root)
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22): with
    the pid, it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def private_dir_prefix() -> str:
    pid = os.getpid()
    return f"{PRIVATE_DIR_PREFIX}{pid}-{_start_ticks(pid) or 0}-"


def remove_tree(path: str) -> bool:
    """Remove ``path`` and everything below it; True when it is gone. Iterative, through
    directory descriptors, one open at a time: a tree of any depth (a 3,000-deep chain is past
    Python's recursion limit and past PATH_MAX) or width goes, symlinks are removed and never
    followed, and a folder the child made unwritable is made writable first. Never raises."""
    try:
        top = os.lstat(path)
    except OSError:
        return True
    if not stat.S_ISDIR(top.st_mode):
        try:
            os.unlink(path)
        except OSError:
            pass
        return not os.path.lexists(path)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    names: list[str] = []  # the chain of folder names from ``path`` down to the one open
    idents = [(top.st_dev, top.st_ino)]
    try:
        while True:
            sub = _clear_files(fd)
            if sub is not None:
                try:
                    child = os.open(sub, flags, dir_fd=fd)
                except PermissionError:  # a folder the child made unreadable (mode 000)
                    os.chmod(sub, 0o700, dir_fd=fd)
                    child = os.open(sub, flags, dir_fd=fd)
                st = os.fstat(child)
                os.close(fd)
                fd = child
                names.append(sub)
                idents.append((st.st_dev, st.st_ino))
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            st = os.fstat(parent)
            os.close(fd)
            fd = parent
            if (st.st_dev, st.st_ino) != idents[-2]:
                return False  # the tree moved under us: stop rather than remove the wrong thing
            idents.pop()
            os.rmdir(names.pop(), dir_fd=fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def _clear_files(fd: int) -> str | None:
    """Unlink every non-folder in the folder ``fd``; the name of one sub-folder left, or None."""
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        pass
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=fd)
    return None


def remove_stale_private_dirs(root: str | None = None, *, legacy_age_s: float = LEGACY_PRIVATE_DIR_AGE_S) -> list[str]:
    """Remove the engine's private folders whose worker process is gone (killed before its
    ``finally`` ran); the paths removed. A folder of a live worker is never touched. Temporary
    folders are per host (per container), so each worker process cleans its own host when it
    starts, and the reaper the host it runs on."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PRIVATE_DIR_PREFIX):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            match = PRIVATE_DIR_RE.match(entry.name)
            if match:
                if _start_ticks(int(match[1])) == int(match[2]):
                    continue  # its worker lives
            elif time.time() - entry.stat(follow_symlinks=False).st_mtime < legacy_age_s:
                continue
        except OSError:
            continue
        remove_tree(entry.path)
        if not os.path.exists(entry.path):
            removed.append(entry.path)
    return removed


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
    # what the child may read beyond Python and the engine: this audit's upload and dataset,
    # the reference version's upload it is compared with (and a test's stand-in entry script)
    reference = request.get("reference") if isinstance(request.get("reference"), dict) else {}
    read_only = [str(p) for p in (request.get("path"), request.get("dataset"), reference.get("path"))
                 if isinstance(p, str)]
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
        except OSError as exc:
            if launch.mode != "bwrap":
                raise
            raise EngineFailure("crash", f"the engine sandbox (bubblewrap) could not be started: {exc}") from None
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
