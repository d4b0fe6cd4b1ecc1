"""A web process killed mid-upload leaves its temporary file (Django streams uploads over
5 MB to disk) or the upload service's staging folder behind; the reaper removes them once
they are older than any live upload could be, and nothing else."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.uploadhandlers import UPLOAD_TEMP_PREFIX, remove_stale_upload_temp_files

ROOT = Path(__file__).resolve().parents[2]
DAY = 24 * 3600

# A real multipart POST through the web application, whose body stops arriving after 10 MB
# of the file because the process is SIGKILLed there (the OOM killer, a gunicorn worker
# timeout, a deploy): the CSRF middleware parses the form, so the upload handler streams it.
KILLED_MID_UPLOAD = r"""
import io, os, signal, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audit.settings")
from django.core.wsgi import get_wsgi_application

app = get_wsgi_application()
head = (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model.onnx\"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n")
file_bytes, killed_at = 20 * 1024 * 1024, 10 * 1024 * 1024

class DyingBody(io.RawIOBase):
    sent = 0
    def readable(self):
        return True
    def readinto(self, buffer):
        if self.sent >= killed_at:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        data = head if self.sent == 0 else bytes(min(len(buffer), 64 * 1024))
        buffer[:len(data)] = data
        self.sent += len(data)
        return len(data)

environ = {"REQUEST_METHOD": "POST", "PATH_INFO": sys.argv[1], "SERVER_NAME": "localhost", "SERVER_PORT": "80",
           "HTTP_HOST": "localhost", "HTTP_COOKIE": "csrftoken=" + "a" * 32, "wsgi.url_scheme": "http",
           "wsgi.input": io.BufferedReader(DyingBody()),
           "CONTENT_TYPE": "multipart/form-data; boundary=b0undary", "CONTENT_LENGTH": str(len(head) + file_bytes)}
app(environ, lambda *args: None)
"""

# The upload service copying an upload to its staging folder when the process is killed.
KILLED_WHILE_STAGING = r"""
import os, signal
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audit.settings")
django.setup()
from audit.services.uploads import _stage

class Upload:
    name, size = "model.onnx", None
    def chunks(self, size):
        for _ in range(8):
            yield bytes(size)
        os.kill(os.getpid(), signal.SIGKILL)

_stage(Upload())
"""


@pytest.fixture
def tmp_root(tmp_path) -> Path:
    """A temp dir of the test's own (tmp_path also holds the test's storage folder)."""
    root = tmp_path / "tmp"
    root.mkdir()
    return root


def run_killed(code: str, tmp_root: Path, *args: str) -> list[Path]:
    """Run ``code`` with its temp dir in ``tmp_root`` until it kills itself; return what it left."""
    env = {**os.environ, "TMPDIR": str(tmp_root)}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr[-3000:]
    return sorted(tmp_root.iterdir())


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for p in [path, *(path.iterdir() if path.is_dir() and not path.is_symlink() else [])]:
        os.utime(p, (then, then), follow_symlinks=False)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/models/upload/", "/api/v1/models/"])
def test_a_killed_web_process_leaves_a_named_file_that_the_reaper_removes(tmp_root, monkeypatch, url):
    import tempfile

    left = run_killed(KILLED_MID_UPLOAD, tmp_root, url)
    assert len(left) == 1 and left[0].is_file(), left
    assert left[0].name.startswith(UPLOAD_TEMP_PREFIX) and left[0].name.endswith(".upload.onnx"), left
    assert left[0].stat().st_size > 5 * 1024 * 1024

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))
    assert remove_stale_upload_temp_files() == []  # seconds old: it could be a live upload
    age(left[0], DAY)
    from workers.tasks import reap_stale_audits

    counts = reap_stale_audits()
    assert counts["upload_temp_files_removed"] == 1
    assert not left[0].exists()


@pytest.mark.django_db
def test_a_staging_folder_left_by_a_killed_process_is_removed(tmp_root):
    left = run_killed(KILLED_WHILE_STAGING, tmp_root)
    assert len(left) == 1 and left[0].is_dir() and left[0].name.startswith(UPLOAD_TEMP_PREFIX), left
    assert (left[0] / "model.onnx").stat().st_size == 8 * 1024 * 1024
    assert remove_stale_upload_temp_files([str(tmp_root)]) == []
    age(left[0], DAY)
    assert remove_stale_upload_temp_files([str(tmp_root)]) == [str(left[0])]
    assert not left[0].exists()


def test_only_our_stale_entries_go_and_nothing_is_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.bin"
    victim.write_bytes(b"keep")
    uploads = tmp_path / "tmp"
    uploads.mkdir()

    stale_file = uploads / f"{UPLOAD_TEMP_PREFIX}abc.upload.onnx"
    live_file = uploads / f"{UPLOAD_TEMP_PREFIX}live.upload.onnx"  # being written: fresh mtime
    django_default = uploads / "tmpabc.upload.onnx"  # not ours by name
    link_to_file = uploads / f"{UPLOAD_TEMP_PREFIX}link.upload.onnx"
    link_to_dir = uploads / f"{UPLOAD_TEMP_PREFIX}linkdir"
    live_folder = uploads / f"{UPLOAD_TEMP_PREFIX}staging-live"  # old folder, file still being written
    odd_folder = uploads / f"{UPLOAD_TEMP_PREFIX}odd"  # holds a subfolder: not our layout
    for path in (stale_file, live_file, django_default):
        path.write_bytes(b"x" * 1024)
    link_to_file.symlink_to(victim)
    link_to_dir.symlink_to(outside, target_is_directory=True)
    live_folder.mkdir()
    (live_folder / "model.onnx").write_bytes(b"x")
    odd_folder.mkdir()
    (odd_folder / "sub").mkdir()
    (odd_folder / "sub" / "f").write_bytes(b"x")

    for path in (stale_file, django_default, link_to_file, link_to_dir, odd_folder, odd_folder / "sub"):
        age(path, DAY)
    os.utime(live_folder, (time.time() - DAY, time.time() - DAY))

    removed = remove_stale_upload_temp_files([str(uploads)], max_age_s=3600)
    assert removed == [str(stale_file)]
    assert sorted(p.name for p in uploads.iterdir()) == sorted(
        p.name for p in (live_file, django_default, link_to_file, link_to_dir, live_folder, odd_folder))
    assert victim.read_bytes() == b"keep"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file another user owns")
def test_another_users_file_with_our_name_is_left_alone(tmp_path):
    theirs = tmp_path / f"{UPLOAD_TEMP_PREFIX}theirs.upload.onnx"
    theirs.write_bytes(b"x")
    os.chown(theirs, 65534, 65534)
    age(theirs, DAY)
    assert remove_stale_upload_temp_files([str(tmp_path)], max_age_s=3600) == []
    assert theirs.exists()


def test_the_safe_age_is_configurable(tmp_path, settings):
    path = tmp_path / f"{UPLOAD_TEMP_PREFIX}x.upload.onnx"
    path.write_bytes(b"x")
    age(path, 2 * 3600)
    assert remove_stale_upload_temp_files([str(tmp_path)]) == []  # the default: six hours
    settings.UPLOAD_TEMP_MAX_AGE_S = 3600
    assert remove_stale_upload_temp_files([str(tmp_path)]) == [str(path)]


@pytest.mark.django_db
def test_a_web_process_reaps_its_own_temp_dir_on_an_upload(member_client, tmp_root, monkeypatch):
    """The reaper task runs on a worker, whose temp dir need not be the web's (compose runs
    them in separate containers): the web process reaps too, at most once an hour."""
    import tempfile

    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    from audit import uploadhandlers

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))
    monkeypatch.setattr(uploadhandlers, "_last_web_reap", None)
    stale, later = (tmp_root / f"{UPLOAD_TEMP_PREFIX}{n}.upload.onnx" for n in ("stale", "later"))

    def upload():  # over FILE_UPLOAD_MAX_MEMORY_SIZE: streamed to a temporary file
        member_client.post(reverse("model-upload"), {"name": "m", "task": "classification",
                                                     "file": SimpleUploadedFile("m.onnx", bytes(6 * 1024 * 1024))})

    stale.write_bytes(b"x")
    age(stale, DAY)
    upload()
    assert not stale.exists()
    later.write_bytes(b"x")
    age(later, DAY)
    upload()
    assert later.exists()  # within the hour: not scanned again
    assert [p.name for p in tmp_root.iterdir()] == [later.name]  # the uploads' own files are gone
