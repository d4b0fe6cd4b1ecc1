"""Asking for a serving audit (issue 20): a workload uploaded as a dataset of kind workload, load
levels on the form and the API with the engine's names, and the refusals, each with its reason."""
import hashlib
import io
import json
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import Audit, Dataset, ModelAsset, ModelVersion
from workers.runner import build_engine_request

from ..factories import make_version

pytestmark = pytest.mark.django_db


def _lm_version(team, *, n_positions=64) -> ModelVersion:
    """A Hugging Face zip as uploaded: config.json (a GPT-2 with a 64-token context) and weights."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("gpt2-tiny/config.json", json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                                                              "n_positions": n_positions, "vocab_size": 256}))
        archive.writestr("gpt2-tiny/model.safetensors", b"")
    content = buffer.getvalue()
    asset, _ = ModelAsset.objects.get_or_create(team=team, name="gpt2-tiny", defaults={"task": "language-modeling"})
    version = ModelVersion(asset=asset, label="v1", format="hf", sha256=hashlib.sha256(content).hexdigest(),
                           size_bytes=len(content))
    version.file.save("gpt2-tiny.zip", ContentFile(content), save=False)
    version.save()
    return version


def _upload(client, lines, name="chat-mix"):
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    return client.post(reverse("dataset-list"), {"name": name, "task": "language-modeling",
                                                  "file": SimpleUploadedFile("requests.jsonl", text.encode())})


def test_a_workload_upload_is_a_dataset_of_kind_workload(member_client, _storage):
    response = _upload(member_client, [{"prompt": "Tell me about lighthouses", "max_new_tokens": 32},
                                       {"prompt_tokens": 48, "max_new_tokens": 8}])
    assert response.status_code == 302
    dataset = Dataset.objects.get()
    assert (dataset.format, dataset.n_samples) == ("workload", 2)


@pytest.mark.parametrize("lines, reason", [
    ([{"prompt": "hi", "max_new_tokens": 0}], "line 1: max_new_tokens must be a positive integer"),
    ([{"prompt": "hi", "max_new_tokens": 4}, {"prompt": "hi", "prompt_tokens": 3, "max_new_tokens": 4}],
     "line 2: give exactly one of prompt"),
    ([{"prompt_tokens": 8, "max_new_tokens": 4, "temperature": 0.7}], "unknown field(s) temperature"),
], ids=["zero-new-tokens", "two-prompts", "unknown-field"])
def test_a_bad_workload_is_refused_at_upload_with_the_line_and_reason(member_client, _storage, lines, reason):
    response = _upload(member_client, lines)
    assert response.status_code == 400
    assert reason in response.content.decode().replace("&#x27;", "'")
    assert Dataset.objects.count() == 0


def _workload(team, lines) -> Dataset:
    content = ("\n".join(json.dumps(line) for line in lines) + "\n").encode()
    dataset = Dataset(team=team, name="mix", format="workload", n_samples=len(lines), task="language-modeling",
                      sha256=hashlib.sha256(content).hexdigest(), size_bytes=len(content))
    dataset.file.save("requests.jsonl", ContentFile(content), save=False)
    dataset.save()
    return dataset


def test_the_api_takes_concurrency_and_request_rate_and_the_worker_serves_the_workload(api, team, no_dispatch):
    version = _lm_version(team)
    dataset = _workload(team, [{"prompt_tokens": 20, "max_new_tokens": 16}, {"prompt": "hello", "max_new_tokens": 8}])
    # two requests cannot hold a concurrency of 4: its ramp-up and drain leave no steady window
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "dataset": dataset.pk,
                                            "concurrency": [1, 4]}, format="json")
    assert response.status_code == 400
    assert "give at least 8 requests" in json.dumps(response.json())
    Dataset.objects.all().delete()
    dataset = _workload(team, [{"prompt_tokens": 20, "max_new_tokens": 16}, {"prompt": "hello", "max_new_tokens": 8}]
                        * 20)
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "dataset": dataset.pk,
                                            "concurrency": [1, 4, 16], "request_rate": [2.5],
                                            "slo_tpot_ms_p95": 50}, format="json")
    assert response.status_code == 201, response.json()
    audit = Audit.objects.get(pk=response.json()["id"])
    assert audit.options["load_levels"] == [{"concurrency": 1}, {"concurrency": 4}, {"concurrency": 16},
                                            {"request_rate": 2.5}]
    request = build_engine_request(audit)
    assert request["workload"] == dataset.file.path and request["dataset"] is None
    assert request["options"]["load_levels"] == audit.options["load_levels"]


def test_a_workload_over_the_models_context_is_refused_with_its_line(api, team, no_dispatch):
    version = _lm_version(team, n_positions=64)
    dataset = _workload(team, [{"prompt_tokens": 20, "max_new_tokens": 16}, {"prompt_tokens": 60, "max_new_tokens": 8}])
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "dataset": dataset.pk}, format="json")
    assert response.status_code == 400
    text = json.dumps(response.json())
    assert "line 2 asks for prompt 60 + 8 new tokens = 68 positions, over the model's context of 64" in text
    assert Audit.objects.count() == 0


def test_load_levels_on_a_model_that_is_not_a_language_model_are_refused(api, team, no_dispatch):
    version = make_version(team)  # the digits classifier
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "concurrency": [1, 4]}, format="json")
    assert response.status_code == 400
    assert "need a language model" in json.dumps(response.json())
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "concurrency": [0]}, format="json")
    assert response.status_code == 400 and "concurrency" in response.json()


def test_the_form_takes_load_levels_as_text(member_client, team, no_dispatch):
    from audit.services.options import clean_engine_options
    from django.core.exceptions import ValidationError

    assert clean_engine_options({"concurrency": "1, 4,16", "request_rate": "0.5"})["load_levels"] == [
        {"concurrency": 1}, {"concurrency": 4}, {"concurrency": 16}, {"request_rate": 0.5}]
    with pytest.raises(ValidationError, match="concurrency"):
        clean_engine_options({"concurrency": "1,x"})
    with pytest.raises(ValidationError, match="request_rate"):
        clean_engine_options({"request_rate": "-1"})
