"""The upload size limit, enforced while the body arrives rather than after it is on disk.

Two layers, both before any view runs:

- ``UploadSizeLimitMiddleware`` reads ``Content-Length`` up front: a body larger than
  ``UPLOAD_MAX_BYTES`` plus ``UPLOAD_FORM_OVERHEAD_BYTES`` (the form's other fields and the
  multipart framing) is refused with 413 and the limit's message before one byte of it is
  read. Django never reads past ``Content-Length``, so this bounds every request.
- ``LimitedTemporaryFileUploadHandler`` (in ``FILE_UPLOAD_HANDLERS`` in place of Django's
  ``TemporaryFileUploadHandler``) writes at most ``UPLOAD_MAX_BYTES`` of each file to its
  temporary file. Past the limit it stops writing, frees what it wrote, and hands the
  upload service a file whose ``size`` is the size that arrived, so the service refuses it
  with the same message as always (audit/services/uploads.py: "The file is X MB; the limit
  is Y MB."), in the form and in the API alike.

In docker-compose nginx refuses such bodies even earlier (deploy/nginx.conf).

Every temporary file or folder an upload makes (this handler's file, the upload service's
staging folder) is named ``energy-audit-upload-*``, so what a killed web process leaves
behind can be told apart and reaped: ``remove_stale_upload_temp_files``.
"""
import logging
import os
import stat
import tempfile
import time

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)

DEFAULT_FORM_OVERHEAD_BYTES = 1024 * 1024
UPLOAD_TEMP_PREFIX = "energy-audit-upload-"
# An upload's temporary file is written with every chunk that arrives, so its mtime is at
# most seconds old while the body streams; after that it lives only while the request checks
# it (minutes at most: gunicorn's --timeout and nginx's body timeouts end any request far
# sooner). Six hours without a write is therefore a file no live request owns.
DEFAULT_UPLOAD_TEMP_MAX_AGE_S = 6 * 3600


def too_large_message(size: int, limit: int) -> str:
    """The wording of the upload service's refusal (audit/services/uploads.py)."""
    return f"The file is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB."


class NamedTemporaryUploadedFile(TemporaryUploadedFile):
    """Django's TemporaryUploadedFile, its file named ``energy-audit-upload-*`` (Django names
    it ``tmp*.upload.<ext>``, which says nothing about whose it is)."""

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        _, ext = os.path.splitext(name)
        file = tempfile.NamedTemporaryFile(
            prefix=UPLOAD_TEMP_PREFIX, suffix=".upload" + ext, dir=settings.FILE_UPLOAD_TEMP_DIR
        )
        UploadedFile.__init__(self, file, name, content_type, size, charset, content_type_extra)


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler that never writes more than the upload limit."""

    def new_file(self, *args, **kwargs):
        FileUploadHandler.new_file(self, *args, **kwargs)  # the parent's, minus its file
        self.file = NamedTemporaryUploadedFile(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )
        self.too_large = False
        remove_stale_upload_temp_files_now_and_then()

    def receive_data_chunk(self, raw_data, start):
        if self.too_large:
            return None  # the rest of this file is read (bounded by Content-Length) and dropped
        if start + len(raw_data) > settings.UPLOAD_MAX_BYTES:
            self.too_large = True
            self.file.seek(0)
            self.file.truncate()  # give the disk back now
            return None
        self.file.write(raw_data)
        return None

    def file_complete(self, file_size):
        uploaded = super().file_complete(file_size)  # size: every byte that arrived
        uploaded.too_large = self.too_large
        return uploaded


class UploadSizeLimitMiddleware:
    """Refuse a request whose declared body is over the upload limit, unread (413)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.UPLOAD_MAX_BYTES
        overhead = getattr(settings, "UPLOAD_FORM_OVERHEAD_BYTES", DEFAULT_FORM_OVERHEAD_BYTES)
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0  # Django itself treats an unreadable length as an empty body
        if declared > limit + overhead:
            message = too_large_message(declared, limit)
            if request.path.startswith("/api/"):
                response = JsonResponse({"detail": message}, status=413)
            else:
                response = HttpResponse(
                    render_to_string("upload_too_large.html", {"message": message}, request=None), status=413
                )
            # the unread body stays on the connection: close it rather than read it
            response["Connection"] = "close"
            return response
        return self.get_response(request)



# --- what killed web processes left behind ---------------------------------------------------


def upload_temp_max_age_s() -> float:
    """UPLOAD_TEMP_MAX_AGE_S (audit/settings.py), else the default."""
    return float(getattr(settings, "UPLOAD_TEMP_MAX_AGE_S", None) or DEFAULT_UPLOAD_TEMP_MAX_AGE_S)


def upload_temp_dirs() -> list[str]:
    """Where uploads write: Django's FILE_UPLOAD_TEMP_DIR and the staging folders' temp dir."""
    dirs = [settings.FILE_UPLOAD_TEMP_DIR or tempfile.gettempdir(), tempfile.gettempdir()]
    return list(dict.fromkeys(dirs))


def remove_stale_upload_temp_files(directories=None, *, max_age_s=None, now=None) -> list[str]:
    """Remove the ``energy-audit-upload-*`` files and staging folders (in ``directories``,
    default ``upload_temp_dirs()``) that are this user's and untouched for ``max_age_s``;
    return their paths. Symbolic links and other users' entries are never touched, and nothing
    is followed: removal goes through directory descriptors, so an entry swapped for a link
    meanwhile cannot redirect it. Age is the newest mtime, of the folder and its files for a
    staging folder, because a live upload writes every chunk as it arrives (see
    DEFAULT_UPLOAD_TEMP_MAX_AGE_S)."""
    cutoff = (time.time() if now is None else now) - (upload_temp_max_age_s() if max_age_s is None else max_age_s)
    removed = []
    for directory in directories or upload_temp_dirs():
        try:
            parent = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            for name in os.listdir(parent):
                if name.startswith(UPLOAD_TEMP_PREFIX) and _remove_if_stale(parent, name, cutoff):
                    removed.append(os.path.join(directory, name))
        finally:
            os.close(parent)
    return removed


def _remove_if_stale(parent: int, name: str, cutoff: float) -> bool:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if st.st_uid != os.geteuid():
            return False
        if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
            os.unlink(name, dir_fd=parent)
            return True
        if stat.S_ISDIR(st.st_mode) and st.st_mtime < cutoff:
            return _remove_stale_staging_folder(parent, name, cutoff)
    except FileNotFoundError:
        pass  # its own request removed it meanwhile
    except OSError as exc:
        log.warning("could not remove the upload temporary %r: %s", name, exc)
    return False


def _remove_stale_staging_folder(parent: int, name: str, cutoff: float) -> bool:
    """A staging folder holds the one file being checked; anything else in it (a folder, a
    file that is not ours) is not our layout, and the folder is left alone."""
    folder = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    try:
        entries = [(entry, os.stat(entry, dir_fd=folder, follow_symlinks=False)) for entry in os.listdir(folder)]
        if any(not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mtime >= cutoff
               for _, st in entries):
            return False
        for entry, _ in entries:
            os.unlink(entry, dir_fd=folder)
    finally:
        os.close(folder)
    os.rmdir(name, dir_fd=parent)
    return True


_last_web_reap = None


def remove_stale_upload_temp_files_now_and_then(interval_s: float = 3600) -> None:
    """The reaper task runs on a worker, whose temp folder need not be the web's (separate
    containers): each web process also reaps its own, at most once an ``interval_s``."""
    global _last_web_reap
    now = time.monotonic()
    if _last_web_reap is not None and now - _last_web_reap < interval_s:
        return
    _last_web_reap = now
    try:
        removed = remove_stale_upload_temp_files()
    except Exception:  # never fail an upload over a cleanup
        log.exception("reaping upload temporary files failed")
        return
    if removed:
        log.info("removed %d stale upload temporary file(s): %s", len(removed), removed[:5])
