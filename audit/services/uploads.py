"""Model and dataset uploads: validated from their content before any row is
written, and all-or-nothing (a refused or failed upload leaves no row and no file)."""
import hashlib
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import IntegrityError, transaction

from workers.engine.archive import check_archive
from workers.engine.datasets import inspect_dataset
from workers.engine.errors import FormatError
from workers.engine.formats import check_allowed, detect_format, safetensors_metadata
from workers.engine.registry import architecture_names

from ..models import Dataset, ModelAsset, ModelVersion, Team
from ..uploadhandlers import UPLOAD_TEMP_PREFIX

CHUNK = 1024 * 1024


@dataclass
class StagedFile:
    """An upload copied to a private temporary file, with its digest and size."""

    path: Path
    name: str
    sha256: str
    size_bytes: int

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


@dataclass
class UploadOutcome:
    obj: object
    created: bool


def _stage(uploaded) -> StagedFile:
    """Copy an upload to a temp file while hashing it and enforcing the size limit."""
    limit = settings.UPLOAD_MAX_BYTES
    if uploaded.size is not None and uploaded.size > limit:
        raise ValidationError(
            f"The file is {uploaded.size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB.", code="too_large"
        )
    folder = Path(tempfile.mkdtemp(prefix=UPLOAD_TEMP_PREFIX))  # reaped if left behind
    name = Path(uploaded.name or "upload").name
    path = folder / name
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("wb") as out:
            for chunk in uploaded.chunks(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ValidationError(f"The file is larger than the {limit / 1e6:.0f} MB limit.", code="too_large")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    staged = StagedFile(path=path, name=name, sha256=digest.hexdigest(), size_bytes=size)
    if size == 0:
        staged.discard()
        raise ValidationError("The file is empty.", code="empty")
    return staged


def _check_model_content(staged: StagedFile):
    if zipfile.is_zipfile(staged.path):
        check_archive(
            staged.path,
            max_members=settings.ARCHIVE_MAX_MEMBERS,
            max_total_bytes=settings.ARCHIVE_MAX_TOTAL_BYTES,
            max_ratio=settings.ARCHIVE_MAX_RATIO,
        )
    info = detect_format(staged.path)
    check_allowed(info)  # TorchScript / torch.export while the deployment has unsafe formats off
    return info


# Formats that hold weights only: something must say which module they belong to.
WEIGHTS_ONLY_FORMATS = ("state-dict", "safetensors")


def _check_architecture(info, staged: StagedFile, input_spec: dict) -> None:
    """Refuse at upload what the worker could not build: bare weights with no architecture
    (named in the form/API or in the safetensors metadata), or an unknown one."""
    if info.format not in WEIGHTS_ONLY_FORMATS:
        return
    known = architecture_names()
    named = input_spec.get("architecture")
    if not named and info.format == "safetensors":
        named = safetensors_metadata(staged.path).get("architecture")
    if not named:
        kind = "a torch.save state dict" if info.format == "state-dict" else "bare safetensors weights"
        raise ValidationError(
            f"This file is {kind}: it holds weights but not the module they belong to. Choose the "
            f"architecture that builds it ({', '.join(known)}) with its builder arguments, or upload a "
            "Hugging Face folder as a zip (config.json + model.safetensors; any architecture built into "
            "transformers), or an ONNX export.",
            code="architecture_needed",
        )
    if named not in known:
        raise ValidationError(f"Unknown architecture “{named}”: registered ones are {', '.join(known)}.",
                              code="architecture_unknown")


def _save_with_row(instance, staged: StagedFile) -> None:
    """Save the row and its file together: if either fails, neither stays."""
    stored_name = None
    try:
        with transaction.atomic():
            with staged.path.open("rb") as handle:
                instance.file.save(staged.name, File(handle), save=False)
            stored_name = instance.file.name
            instance.save()
    except BaseException:
        if stored_name:
            instance.file.storage.delete(stored_name)
        raise


def model_version_upload(
    *, user, team: Team, asset_name: str, task: str, label: str, uploaded, input_spec: dict | None = None
) -> UploadOutcome:
    """Create a model version from an uploaded file or zip.

    Returns the existing version (created=False) when the same bytes were already
    uploaded to this team. Raises ValidationError with a message for the form.
    """
    staged = _stage(uploaded)
    try:
        existing = (
            ModelVersion.objects.filter(asset__team=team, sha256=staged.sha256).select_related("asset").first()
        )
        if existing:
            return UploadOutcome(existing, created=False)
        try:
            info = _check_model_content(staged)
        except FormatError as exc:
            raise ValidationError(str(exc), code="format") from exc
        _check_architecture(info, staged, input_spec or {})
        with transaction.atomic():
            asset, _ = ModelAsset.objects.get_or_create(team=team, name=asset_name, defaults={"task": task})
            label = label or _next_label(asset)
            if asset.versions.filter(label=label).exists():
                raise ValidationError(f"{asset.name} already has a version labelled “{label}”.", code="duplicate_label")
            version = ModelVersion(
                asset=asset,
                label=label,
                format=info.format,
                format_detail=info.detail[:300],
                sha256=staged.sha256,
                size_bytes=staged.size_bytes,
                uploaded_by=user,
                input_spec=input_spec or {},
            )
            try:
                _save_with_row(version, staged)
            except IntegrityError as exc:
                raise ValidationError("That version label was taken while uploading; try again.") from exc
        return UploadOutcome(version, created=True)
    finally:
        staged.discard()


def _next_label(asset: ModelAsset) -> str:
    n = asset.versions.count() + 1
    while asset.versions.filter(label=f"v{n}").exists():
        n += 1
    return f"v{n}"


def dataset_upload(*, user, team: Team, name: str, task: str, uploaded) -> UploadOutcome:
    """Create a dataset from an uploaded CSV, JSONL, NPZ or text file, checked before it is stored."""
    staged = _stage(uploaded)
    try:
        existing = Dataset.objects.filter(team=team, sha256=staged.sha256).first()
        if existing:
            return UploadOutcome(existing, created=False)
        try:
            info = inspect_dataset(staged.path)
        except FormatError as exc:
            raise ValidationError(str(exc), code="format") from exc
        if Dataset.objects.filter(team=team, name=name).exists():
            raise ValidationError(f"The team already has a dataset named “{name}”.", code="duplicate_name")
        dataset = Dataset(
            team=team,
            name=name,
            format=info.format,
            task=task,
            n_samples=info.n_samples,
            sha256=staged.sha256,
            size_bytes=staged.size_bytes,
            uploaded_by=user,
        )
        try:
            _save_with_row(dataset, staged)
        except IntegrityError as exc:
            raise ValidationError(f"The team already has a dataset named “{name}”.") from exc
        return UploadOutcome(dataset, created=True)
    finally:
        staged.discard()
