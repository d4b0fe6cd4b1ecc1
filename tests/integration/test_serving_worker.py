"""A serving audit end to end (issue 20): a language model and a workload uploaded through the
web client, load levels asked for on the form, served by a real Celery worker in its sandbox
(the workload staged in beside the upload), stored and shown on the report."""
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import Audit, Dataset, ModelVersion

from .conftest import audit_state, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def gpt2_zip(tmp_path) -> bytes:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                       bos_token_id=1, eos_token_id=2))
    folder = tmp_path / "gpt2-tiny"
    model.save_pretrained(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"gpt2-tiny/{path.name}")
    return buffer.getvalue()


def test_a_workload_is_served_at_each_level_by_a_real_worker(client, member, start_worker, tmp_path):
    worker = start_worker()
    client.force_login(member)
    response = client.post(reverse("model-upload"), {"name": "gpt2-tiny", "task": "language-modeling",
                                                     "file": SimpleUploadedFile("gpt2-tiny.zip", gpt2_zip(tmp_path))})
    assert response.status_code == 302, response.content.decode()[-2000:]
    lines = [{"prompt_tokens": 3 + (i * 7) % 20, "max_new_tokens": 2 + (i * 5) % 10} for i in range(10)]
    response = client.post(reverse("dataset-list"), {
        "name": "mixed-lengths", "task": "language-modeling",
        "file": SimpleUploadedFile("requests.jsonl", ("\n".join(json.dumps(x) for x in lines) + "\n").encode())})
    assert response.status_code == 302, response.content.decode()[-2000:]
    version, dataset = ModelVersion.objects.get(), Dataset.objects.get()
    assert dataset.format == "workload"
    response = client.post(reverse("audit-create", args=[version.pk]), {
        "target": "cpu", "batch_sizes": "1", "recipes": ["baseline"], "dataset": dataset.pk,
        "concurrency": "1,2", "slo_tpot_ms_p95": "1000"})
    assert response.status_code == 302, response.content.decode()[-3000:]
    audit = Audit.objects.get()
    assert audit.options["load_levels"] == [{"concurrency": 1}, {"concurrency": 2}]

    final = wait_for(lambda: (a := audit_state(audit.pk)).is_finished and a, timeout=300,
                     what="the serving audit to finish", logs=worker.log)
    assert final.status == Audit.Status.SUCCEEDED, final.error + worker.log()
    assert final.scenario["kind"] == "serving" and final.scenario["workload"]["requests"] == 10
    assert final.scenario["slo"] == {"ttft_ms": None, "tpot_ms": 1000.0}
    baseline = final.variants.get(recipe="baseline")
    levels = baseline.details["serving"]
    assert [lv["concurrency"] for lv in levels] == [1, 2]
    for level in levels:
        assert level["energy_j_per_output_token"] > 0 and level["steady_requests"] > 0
        assert [r["output_tokens"] for r in level["requests"]] == [x["max_new_tokens"] for x in lines]
    assert final.tradeoff["serving"]["cheapest"]["recipe"] == "baseline"
    page = client.get(final.get_absolute_url()).content.decode()
    assert 'id="serving-table"' in page and "concurrency 2" in page and "Cheapest within the SLO" in page
    assert str(dataset.file.path) not in page  # the stage and the page name the upload, not the server's path
