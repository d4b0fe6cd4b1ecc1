"""Dashboard pages: models, datasets and uploads (the team overview is in reports.py)."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render

from ..forms import AuditRequestForm, DatasetUploadForm, ModelUploadForm
from ..selectors import audits_for_user, datasets_for_user, model_assets_for_user, teams_for_user
from ..services.uploads import dataset_upload, model_version_upload
from .audits import available_recipes


def _form_error(form, exc: ValidationError) -> None:
    for message in exc.messages:
        form.add_error("file" if exc.code in {"format", "too_large", "empty", "architecture_needed", "architecture_unknown"} else None, message)


@login_required
def model_list(request):
    return render(request, "audit/model_list.html", {"models": model_assets_for_user(request.user)})


@login_required
def model_upload(request):
    teams = teams_for_user(request.user)
    if not teams.exists():
        messages.error(request, "You are not in a team yet; ask a team lead to add you.")
        return redirect("home")
    form = ModelUploadForm(request.POST or None, request.FILES or None, teams=teams)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            outcome = model_version_upload(
                user=request.user,
                team=data["team"],
                asset_name=data["name"].strip(),
                task=data["task"],
                label=data["label"].strip(),
                uploaded=data["file"],
                input_spec=form.input_spec(),
            )
        except ValidationError as exc:
            _form_error(form, exc)
        else:
            version = outcome.obj
            if outcome.created:
                messages.success(request, f"Uploaded {version} ({version.format}).")
            else:
                messages.info(request, f"This file was uploaded before: it is {version}. Nothing new was stored.")
            return redirect(version.asset.get_absolute_url())
    return render(request, "audit/model_upload.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def model_detail(request, pk: int):
    asset = get_object_or_404(model_assets_for_user(request.user), pk=pk)
    versions = asset.versions.select_related("uploaded_by").order_by("-created_at")
    audits = audits_for_user(request.user).filter(model_version__asset=asset)[:50]
    form = AuditRequestForm(team=asset.team, recipes=available_recipes())
    return render(
        request, "audit/model_detail.html", {"asset": asset, "versions": versions, "audits": audits, "form": form}
    )


@login_required
def dataset_list(request):
    teams = teams_for_user(request.user)
    form = DatasetUploadForm(request.POST or None, request.FILES or None, teams=teams)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            outcome = dataset_upload(
                user=request.user, team=data["team"], name=data["name"].strip(), task=data["task"], uploaded=data["file"]
            )
        except ValidationError as exc:
            _form_error(form, exc)
        else:
            dataset = outcome.obj
            if outcome.created:
                messages.success(request, f"Uploaded dataset {dataset.name}: {dataset.n_samples} samples ({dataset.format}).")
            else:
                messages.info(request, f"This file was uploaded before as dataset {dataset.name}.")
            return redirect("dataset-list")
    return render(
        request,
        "audit/dataset_list.html",
        {"datasets": datasets_for_user(request.user), "form": form},
        status=400 if form.errors else 200,
    )
