"""The upload limit holds while the body streams: a 300 MB body against a 1 MB limit never
puts more than the limit on disk, and is refused with the usual message, in the form and
in the API. Bodies are generated as they are read; none is ever held in memory."""
import os
import tempfile
import time
from pathlib import Path

import pytest
from django.urls import reverse

from audit.models import ModelVersion

from .api.conftest import token_client
from .conftest import stored_files

MB = 1_000_000
LIMIT = 1024 * 1024
BOUNDARY = "streamedBoundary7MA4YWxkTrZu0gW"


def disk_usage(*folders: Path) -> int:
    total = 0
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_blocks * 512
                except FileNotFoundError:
                    pass  # removed while we looked
    return total


class StreamedUpload:
    """A multipart body (form fields and one file of ``file_bytes`` zero bytes), produced as
    it is read. At every read, it measures what is on disk in ``watch``."""

    def __init__(self, fields: dict, file_bytes: int, watch: list[Path], filename: str = "model.safetensors"):
        head = b"".join(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        head += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        self.head, self.tail = head, f"\r\n--{BOUNDARY}--\r\n".encode()
        self.file_bytes = file_bytes
        self.length = len(self.head) + file_bytes + len(self.tail)
        self.position = 0
        self.watch = watch
        self.peak_disk = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.length - self.position
        size = min(size, self.length - self.position, 1 << 20)
        out = bytearray()
        while len(out) < size:
            pos = self.position + len(out)
            if pos < len(self.head):
                piece = self.head[pos:pos + size - len(out)]
            elif pos < len(self.head) + self.file_bytes:
                piece = bytes(min(size - len(out), len(self.head) + self.file_bytes - pos))
            else:
                start = pos - len(self.head) - self.file_bytes
                piece = self.tail[start:start + size - len(out)]
            out += piece
        self.position += len(out)
        self.peak_disk = max(self.peak_disk, disk_usage(*self.watch))
        return bytes(out)

    def readline(self, size: int = -1) -> bytes:  # WSGI asks for it; multipart parsing does not use it
        return self.read(size)

    def environ(self) -> dict:
        return {"wsgi.input": self, "CONTENT_LENGTH": str(self.length),
                "CONTENT_TYPE": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture
def temp_dirs(settings, tmp_path, monkeypatch):
    """Where an upload can land on its way in: Django's temporary files and the service's."""
    upload_tmp, service_tmp = tmp_path / "upload-tmp", tmp_path / "tmp"
    upload_tmp.mkdir()
    service_tmp.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(upload_tmp)
    monkeypatch.setattr(tempfile, "tempdir", str(service_tmp))
    settings.UPLOAD_MAX_BYTES = LIMIT
    return [upload_tmp, service_tmp]


def post_streamed(client, url: str, body: StreamedUpload):
    # an empty payload with our own wsgi.input: the test client then sends the stream as is
    return client.post(url, data=b"", content_type=f"multipart/form-data; boundary={BOUNDARY}", **body.environ())


MESSAGE = "The file is 300.0 MB; the limit is 1 MB."


def test_api_refuses_an_oversized_body_before_reading_it(member, temp_dirs, _storage):
    body = StreamedUpload({"name": "big", "task": "classification"}, 300 * MB, temp_dirs + [_storage])
    started = time.monotonic()
    response = post_streamed(token_client(member), "/api/v1/models/", body)
    assert response.status_code == 413
    assert response.json() == {"detail": MESSAGE}
    assert body.position == 0  # not one byte of the body was read
    assert time.monotonic() - started < 5
    assert ModelVersion.objects.count() == 0 and stored_files(_storage) == []


def test_form_refuses_an_oversized_body_before_reading_it(member_client, temp_dirs, _storage):
    body = StreamedUpload({"name": "big", "task": "classification"}, 300 * MB, temp_dirs + [_storage])
    response = post_streamed(member_client, reverse("model-upload"), body)
    assert response.status_code == 413
    assert MESSAGE in response.content.decode()
    assert body.position == 0
    assert ModelVersion.objects.count() == 0 and stored_files(_storage) == []


def test_streamed_body_past_the_limit_never_lands_on_disk(member, temp_dirs, _storage, settings):
    """Content-Length cannot be relied on alone (the check has slack for the form's fields, a
    proxy may not pass it on): with the up-front check out of the way, the upload handler
    alone keeps the 300 MB off the disk."""
    settings.UPLOAD_FORM_OVERHEAD_BYTES = 1 << 40
    body = StreamedUpload({"name": "big", "task": "classification"}, 300 * MB, temp_dirs + [_storage])
    response = post_streamed(token_client(member), "/api/v1/models/", body)
    assert body.position == body.length  # it really streamed all of it through
    assert response.status_code == 400
    assert response.json()["file"] == [MESSAGE]
    assert body.peak_disk < 2 * MB, body.peak_disk
    assert disk_usage(*temp_dirs) == 0
    assert ModelVersion.objects.count() == 0 and stored_files(_storage) == []


def test_streamed_form_upload_past_the_limit_shows_the_message(member_client, temp_dirs, _storage, settings):
    settings.UPLOAD_FORM_OVERHEAD_BYTES = 1 << 40
    body = StreamedUpload({"name": "big", "task": "classification"}, 40 * MB, temp_dirs + [_storage])
    response = post_streamed(member_client, reverse("model-upload"), body)
    assert response.status_code == 400
    assert "The file is 40.0 MB; the limit is 1 MB." in response.content.decode()
    assert body.peak_disk < 2 * MB, body.peak_disk
    assert ModelVersion.objects.count() == 0 and stored_files(_storage) == []


def test_a_body_within_the_limit_still_goes_through_the_handler(member, temp_dirs, _storage, settings):
    """Just under the limit: written to the handler's temporary file (not memory) and on to the
    upload service, which reads it (a body of zeros is not a model: refused for its content)."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = StreamedUpload({"name": "small", "task": "classification"}, LIMIT - 10, temp_dirs + [_storage])
    response = post_streamed(token_client(member), "/api/v1/models/", body)
    assert response.status_code == 400
    assert "limit" not in response.json()["file"][0]
    assert body.peak_disk > LIMIT // 2  # it did reach the disk (measured as it arrived)
