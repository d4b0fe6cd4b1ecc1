"""The demo audit exercises the whole report: the dataset, every recipe, three batch sizes."""
import pytest

from audit import demo
from audit.services import audits as services
from workers.engine.profile import RECIPES

from ..models import mlp_safetensors_bytes

pytestmark = pytest.mark.django_db


def test_demo_audit_asks_for_every_recipe_three_batch_sizes_and_the_dataset(monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(demo, "train_digits_mlp", lambda: (mlp_safetensors_bytes(), 0.9))
    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: None)
    with django_capture_on_commit_callbacks(execute=True):
        audit = demo.ensure_demo(log=lambda *_: None)
    assert audit.options["batch_sizes"] == [1, 8, 32]
    assert audit.options["recipes"][0] == "baseline" and set(audit.options["recipes"]) == set(RECIPES)
    assert audit.dataset is not None and audit.dataset.name == demo.DEMO_DATASET
    # one torch thread reaches the engine: the web server and the worker share the demo's machine,
    # and a thread pool over every core made calls wait on descheduled threads (issue 22: x30 for x1.08)
    from workers.runner import build_engine_request

    assert build_engine_request(audit)["options"]["threads"] == 1
    assert demo.ensure_demo(log=lambda *_: None) is None  # idempotent
