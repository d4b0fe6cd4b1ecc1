"""Uploading models and datasets through the pages: recognised from content,
refused with a message on the form, and never half-written."""
import io
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import Dataset, ModelAsset, ModelVersion

from .conftest import stored_files
from .models import mlp_safetensors_bytes, pickled_module_bytes

pytestmark = pytest.mark.django_db


def upload_model(client, content: bytes, name="digits-mlp", filename="model.safetensors", follow=False, **extra):
    data = {"name": name, "task": "classification", "label": extra.pop("label", ""),
            "file": SimpleUploadedFile(filename, content), **extra}
    return client.post(reverse("model-upload"), data, follow=follow)


def test_upload_safetensors_creates_version_with_digest_and_format(member_client, team, _storage):
    content = mlp_safetensors_bytes()
    response = upload_model(member_client, content)
    assert response.status_code == 302
    version = ModelVersion.objects.get()
    assert version.asset.team == team
    assert version.format == "safetensors"
    assert version.size_bytes == len(content)
    import hashlib

    assert version.sha256 == hashlib.sha256(content).hexdigest()
    assert version.label == "v1"
    assert [p.read_bytes() for p in stored_files(_storage)] == [content]


def test_identical_reupload_is_recognised_and_stores_nothing(member_client, _storage):
    content = mlp_safetensors_bytes()
    upload_model(member_client, content)
    response = upload_model(member_client, content, name="another-name", follow=True)
    assert ModelVersion.objects.count() == 1
    assert ModelAsset.objects.count() == 1
    assert "uploaded before" in response.content.decode()
    assert len(stored_files(_storage)) == 1


def test_new_weights_under_same_name_become_next_version(member_client):
    upload_model(member_client, mlp_safetensors_bytes(seed=0))
    upload_model(member_client, mlp_safetensors_bytes(seed=1))
    assert list(ModelVersion.objects.order_by("created_at").values_list("label", flat=True)) == ["v1", "v2"]


@pytest.mark.parametrize(
    "content, filename, message",
    [
        (b"", "model.onnx", "empty"),
        (b"\x13\x37 definitely not a model" * 50, "model.onnx", "unknown model format"),
        (pickled_module_bytes(), "model.pt", "pickled"),
    ],
    ids=["empty", "unknown", "pickled-module"],
)
def test_refused_uploads_leave_no_row_and_no_file(member_client, _storage, content, filename, message):
    response = upload_model(member_client, content, filename=filename)
    assert response.status_code == 400
    assert message in response.content.decode().lower()
    assert ModelVersion.objects.count() == 0
    assert ModelAsset.objects.count() == 0
    assert stored_files(_storage) == []


def test_pickled_module_message_says_how_to_export(member_client):
    response = upload_model(member_client, pickled_module_bytes(), filename="model.safetensors")
    page = response.content.decode()
    assert "safetensors" in page and "onnx" in page.lower()


def test_upload_over_the_size_limit_is_refused(member_client, settings, _storage):
    settings.UPLOAD_MAX_BYTES = 1000
    response = upload_model(member_client, mlp_safetensors_bytes())
    assert response.status_code == 400
    assert "limit" in response.content.decode()
    assert ModelVersion.objects.count() == 0 and stored_files(_storage) == []


def test_zip_escaping_its_folder_is_refused(member_client, _storage):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("../../etc/evil.safetensors", b"x" * 10)
    response = upload_model(member_client, buffer.getvalue(), filename="model.zip")
    assert response.status_code == 400
    assert ModelVersion.objects.count() == 0 and stored_files(_storage) == []


def test_duplicate_label_is_refused_without_orphan_asset(member_client):
    upload_model(member_client, mlp_safetensors_bytes(seed=0), label="release")
    response = upload_model(member_client, mlp_safetensors_bytes(seed=1), label="release")
    assert response.status_code == 400
    assert "already has a version" in response.content.decode()
    assert ModelVersion.objects.count() == 1


def digits_npz() -> bytes:
    from sklearn.datasets import load_digits

    digits = load_digits()
    buffer = io.BytesIO()
    np.savez(buffer, inputs=digits.data.astype("float32") / 16.0, labels=digits.target)
    return buffer.getvalue()


def test_dataset_upload_counts_samples(member_client, _storage):
    response = member_client.post(
        reverse("dataset-list"),
        {"name": "digits", "task": "classification", "file": SimpleUploadedFile("digits.npz", digits_npz())},
    )
    assert response.status_code == 302
    dataset = Dataset.objects.get()
    assert (dataset.format, dataset.n_samples) == ("npz", 1797)
    assert len(stored_files(_storage)) == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (b"sentence,label\nhello,1\nworld\n", "columns"),
        (b"foo,bar\n1,2\n", "text column"),
        (b'{"text": "a", "label": 1}\nnot json\n', "not valid JSON"),
    ],
    ids=["ragged-csv", "no-text-column", "broken-jsonl"],
)
def test_bad_dataset_is_refused_with_message(member_client, _storage, content, message):
    response = member_client.post(
        reverse("dataset-list"),
        {"name": "bad", "task": "text-classification", "file": SimpleUploadedFile("data.csv", content)},
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Dataset.objects.count() == 0 and stored_files(_storage) == []


def test_npz_with_mismatched_lengths_is_refused(member_client):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((10, 4), dtype="float32"), y=np.zeros(9, dtype="int64"))
    response = member_client.post(
        reverse("dataset-list"),
        {"name": "bad", "task": "classification", "file": SimpleUploadedFile("d.npz", buffer.getvalue())},
    )
    assert response.status_code == 400
    assert "disagree" in response.content.decode()
