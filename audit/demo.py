"""The demo `make run` prepares: a team with a lead and a member, a digits classifier
trained in a few seconds, the digits test split as a dataset, and an audit of it with
every recipe and three batch sizes, so that every part of the report has something to show."""
import io
import json
import tempfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import transaction

from .models import Audit, Dataset, Membership, ModelAsset, Team
from .services.audits import audit_request
from .services.uploads import dataset_upload, model_version_upload

DEMO_TEAM = "Demo Lab"
DEMO_USERS = {"lead": ("demo-lead", "energy-lead-2026"), "member": ("demo-member", "energy-member-2026")}
# Addresses on a domain reserved for examples (RFC 2606): the console email backend of `make run`
# prints the review notifications sent to them; they reach no one.
DEMO_EMAIL_DOMAIN = "example.org"
DEMO_MODEL = "digits-mlp"
DEMO_DATASET = "digits-test"
MLP_CONFIG = {"in_features": 64, "hidden": [256, 128], "num_classes": 10, "activation": "relu"}
# The demo exercises the whole report: three batch sizes, the dataset (accuracy), and every
# recipe the engine offers when it runs (those that do not apply to a torch MLP on CPU show
# up as skipped, with their reason).
DEMO_BATCH_SIZES = [1, 8, 32]
# Shorter windows than a real audit's, so the first report is there in a few minutes on a
# laptop; the report shows the windows, iterations and confidence each figure came from.
# One torch thread: `make run` puts the web server, beat and the worker on the same machine, and
# a tiny MLP gains nothing from a thread pool. With one thread per core, every call waits for
# whichever thread another process has descheduled: on a busy 2-core host the mean call was 70
# times the median and the fp16 row read x30 energy against x1.08 with one thread (issue 22).
DEMO_ENGINE_OPTIONS = {"window_s": 0.5, "time_cap_s": 3.0, "idle_s": 1.0, "threads": 1}


def demo_recipes() -> list[str]:
    from workers.engine.profile import RECIPES

    names = list(RECIPES)
    return ["baseline"] + [n for n in names if n != "baseline"]


def _digits_split():
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def train_digits_mlp(epochs: int = 40) -> tuple[bytes, float]:
    """Train the demo classifier; returns safetensors bytes (architecture in the metadata) and test accuracy."""
    import torch
    from safetensors.torch import save

    from workers.engine.registry import get_architecture

    (x_train, y_train), (x_test, y_test) = _digits_split()
    torch.manual_seed(0)
    model = get_architecture("mlp").build(MLP_CONFIG)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        for start in range(0, len(xs), 128):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xs[start:start + 128]), ys[start:start + 128])
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    metadata = {"architecture": "mlp", "architecture_config": json.dumps(MLP_CONFIG)}
    return save(state, metadata=metadata), float(accuracy)


def digits_test_npz() -> bytes:
    import numpy as np

    _, (x_test, y_test) = _digits_split()
    buffer = io.BytesIO()
    np.savez(buffer, inputs=x_test, labels=y_test)
    return buffer.getvalue()


def _upload(payload: bytes, name: str):
    folder = Path(tempfile.mkdtemp(prefix="demo-"))
    path = folder / name
    path.write_bytes(payload)
    return File(path.open("rb"), name=name)


def ensure_demo(*, recipes: list[str] | None = None, batch_sizes: list[int] | None = None, log=print) -> Audit | None:
    """Create what is missing of the demo; running it twice changes nothing."""
    with transaction.atomic():
        team, _ = Team.objects.get_or_create(name=DEMO_TEAM, defaults={"slug": "demo-lab"})
        users = {}
        for role, (username, password) in DEMO_USERS.items():
            user, created = get_user_model().objects.get_or_create(username=username)
            changed = created
            if created:
                user.set_password(password)
            if not user.email:  # demo users made before they had addresses get theirs too
                user.email = f"{username}@{DEMO_EMAIL_DOMAIN}"
                changed = True
            if changed:
                user.save()
            Membership.objects.get_or_create(user=user, team=team, defaults={"role": role})
            users[role] = user
    log(f"Demo team '{team.name}': log in as {DEMO_USERS['lead'][0]} / {DEMO_USERS['lead'][1]} (lead) "
        f"or {DEMO_USERS['member'][0]} / {DEMO_USERS['member'][1]} (member)")

    asset = ModelAsset.objects.filter(team=team, name=DEMO_MODEL).first()
    if asset is None:
        payload, accuracy = train_digits_mlp()
        log(f"Trained the demo digits classifier: test accuracy {accuracy:.1%}")
        with _upload(payload, "digits-mlp.safetensors") as handle:
            version = model_version_upload(
                user=users["member"], team=team, asset_name=DEMO_MODEL, task="classification", label="v1", uploaded=handle
            ).obj
        asset = version.asset
    if not Dataset.objects.filter(team=team, name=DEMO_DATASET).exists():
        with _upload(digits_test_npz(), "digits-test.npz") as handle:
            dataset_upload(user=users["member"], team=team, name=DEMO_DATASET, task="classification", uploaded=handle)

    version = asset.versions.order_by("created_at").first()
    if Audit.objects.filter(model_version=version).exists():
        log(f"The demo audit exists already: {asset.name} {version.label}")
        return None
    audit = audit_request(
        user=users["member"],
        model_version=version,
        dataset=Dataset.objects.get(team=team, name=DEMO_DATASET),
        target_queue="cpu",
        device="cpu",
        batch_sizes=batch_sizes or DEMO_BATCH_SIZES,
        recipes=recipes or demo_recipes(),
        engine_options=DEMO_ENGINE_OPTIONS,
    )
    log(f"Queued demo audit #{audit.pk} of {asset.name} {version.label}")
    return audit
