"""Input shapes set at upload, in the grammar of the engine's CLI (NAME=DIMS[:DTYPE]), through
the API's input_spec and the upload form; both end up where the runner passes them to the
engine (input_spec.input_overrides)."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.forms import ModelUploadForm
from audit.models import ModelVersion, Team

from ..models import mlp_safetensors_bytes

pytestmark = pytest.mark.django_db


def upload(api, content: bytes, **fields):
    data = {"name": "ocr-rec", "file": SimpleUploadedFile("weights.safetensors", content), **fields}
    return api.post("/api/v1/models/", data, format="multipart")


def test_api_inputs_become_input_overrides(api, team):
    response = upload(api, mlp_safetensors_bytes(seed=21),
                      input_spec='{"seq_len": 16, "inputs": ["x=3x48x320:float16", "mask=48"]}')
    assert response.status_code == 201, response.json()
    spec = ModelVersion.objects.get(pk=response.json()["id"]).input_spec
    assert spec == {"seq_len": 16,
                    "input_overrides": {"shape": {"x": [3, 48, 320], "mask": [48]}, "dtype": {"x": "float16"}}}


def test_api_refuses_a_malformed_input_with_the_grammar(api, team):
    response = upload(api, mlp_safetensors_bytes(seed=22), input_spec='{"inputs": ["x=3xfoo"]}')
    assert response.status_code == 400
    assert "whole numbers separated by 'x'" in " ".join(response.json()["input_spec"])
    response = upload(api, mlp_safetensors_bytes(seed=23), input_spec='{"inputs": [3]}')
    assert response.status_code == 400 and "NAME=DIMS" in " ".join(response.json()["input_spec"])


def _form(team, **data):
    fields = {"name": "resnet", "task": "image-classification", **data}
    files = {"file": SimpleUploadedFile("w.safetensors", b"x")}
    return ModelUploadForm(fields, files, teams=Team.objects.filter(pk=team.pk))


def test_form_input_shapes_one_per_line(team):
    form = _form(team, image_size=64, inputs="pixel_values=3x32x48\nmask=8:bool")
    assert form.is_valid(), form.errors
    assert form.input_spec()["input_overrides"] == {
        "image_size": 64, "shape": {"pixel_values": [3, 32, 48], "mask": [8]}, "dtype": {"mask": "bool"}}
    bad = _form(team, inputs="pixel_values=3x32x")
    assert not bad.is_valid() and "whole numbers" in str(bad.errors["inputs"])
