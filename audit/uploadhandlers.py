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
"""
from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

DEFAULT_FORM_OVERHEAD_BYTES = 1024 * 1024


def too_large_message(size: int, limit: int) -> str:
    """The wording of the upload service's refusal (audit/services/uploads.py)."""
    return f"The file is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB."


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler that never writes more than the upload limit."""

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.too_large = False

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

