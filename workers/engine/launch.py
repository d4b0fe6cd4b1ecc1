"""How the engine child is started: its environment, and what runs between fork and exec.

- ``child_env``: an environment built from an allow-list (no DATABASE_URL, CELERY_*,
  SECRET_KEY, nothing whose name mentions PASSWORD/TOKEN/SECRET/KEY), HOME and TMPDIR pointing
  at the private folder; Hugging Face libraries are told to stay offline.
- ``preexec``: the ``preexec_fn`` of the launch. For a root worker it first stages what the
  sandbox may read (``Staging``: a mount namespace of the launch's own, copies of the source
  mount trees, this audit's files through an idmapped mount) and drops to the sandbox's host
  user; then PR_SET_PDEATHSIG=SIGKILL (a change of credentials clears it), so the child dies
  with the worker, and the resource limits (RLIMIT_AS, CPU, FSIZE, NPROC).

That hook is documented as unsafe when the parent runs threads; it is kept to system calls
and small allocations, and Celery's prefork pool runs tasks in single-threaded processes.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import resource
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


REPO_ROOT = str(Path(__file__).resolve().parents[2])
GIB = 1 << 30

ENV_ALLOW = (
    "PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
    "AUDIT_CPU_TDP_W", "AUDIT_GPU_TDP_W", "AUDIT_ALLOW_UNSAFE_FORMATS", "AUDIT_ARCHITECTURE_MODULES",
    "AUDIT_POWERCAP_ROOT",
    # what the CPU estimate and the host boundary read (meters/cpu_table.py, boundary.py)
    "AUDIT_CPU_IDLE_W", "AUDIT_CLOUD_INSTANCE_TYPE",
)
ENV_DENY = re.compile(r"PASSWORD|TOKEN|SECRET|KEY|DATABASE|CELERY|BROKER|CREDENTIAL", re.IGNORECASE)

PR_SET_PDEATHSIG = 1


def _load_prctl():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


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


def preexec(limits: dict, parent_pid: int, *, staging: Staging | None = None,
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
