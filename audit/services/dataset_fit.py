"""Which of a team's datasets can evaluate a model version, and why the others cannot.

The audit form offers only the datasets that fit and lists the others with the reason; an audit
requested with one that does not fit is refused with the same reason. Judged from what the web
process knows without opening files: the model's task and format, the dataset's task and format
(the engine checks shapes, vocabularies and labels again before it measures anything,
workers/engine/datasets.py ``check_dataset_for_model``).

- The tasks must agree: a dataset uploaded for language modelling evaluates a language model, a
  classification dataset a classifier (a text or an image classifier too); "Other" on either side
  leaves the task unjudged.
- The inputs must fit: text (CSV/JSONL with labels, plain text) is tokenised by the model's own
  tokenizer, which only a Hugging Face model brings; plain text measures a language model's
  perplexity; an image model takes arrays (NPZ). A text model (a Hugging Face language model or
  text classifier) reads token ids: an NPZ fits it when it holds an ``input_ids`` array (the
  archive's directory is read, nothing loaded). Other arrays fit any model whose inputs they name.
- A serving workload (JSONL requests) is served by a language model."""
import re
import zipfile
from dataclasses import dataclass

from ..models import Dataset, ModelVersion, Task

TEXT_FORMATS = {"csv", "jsonl", "text"}
# The dataset tasks each model task is evaluated with ("other" fits every task, both ways).
TASKS_FITTING = {
    Task.CLASSIFICATION: {Task.CLASSIFICATION, Task.TEXT_CLASSIFICATION, Task.IMAGE_CLASSIFICATION},
    Task.TEXT_CLASSIFICATION: {Task.TEXT_CLASSIFICATION, Task.CLASSIFICATION},
    Task.IMAGE_CLASSIFICATION: {Task.IMAGE_CLASSIFICATION, Task.CLASSIFICATION},
    Task.REGRESSION: {Task.REGRESSION},
    Task.LANGUAGE_MODELING: {Task.LANGUAGE_MODELING},
    Task.FEATURE_EXTRACTION: {Task.FEATURE_EXTRACTION},
}
FORMAT_WORDS = {"csv": "CSV text", "jsonl": "JSONL text", "text": "plain text"}


# A Hugging Face model with one of these heads reads token ids (format_detail names the architectures).
TEXT_HEADS = re.compile(r"(LMHead|CausalLM|MaskedLM|Seq2SeqLM|ForConditionalGeneration|ForSequenceClassification|"
                        r"ForTokenClassification|ForQuestionAnswering)")
TEXT_TASKS = {Task.LANGUAGE_MODELING, Task.TEXT_CLASSIFICATION}


def takes_token_ids(version: ModelVersion) -> bool:
    return version.format == "hf" and (version.asset.task in TEXT_TASKS or bool(TEXT_HEADS.search(version.format_detail)))


def npz_arrays(dataset: Dataset) -> list[str] | None:
    """The names of an NPZ dataset's arrays (its zip directory only; nothing is loaded), or None
    when they cannot be read here (then nothing is judged on them)."""
    if dataset.format != "npz":
        return None
    if not hasattr(dataset, "_npz_arrays"):
        try:
            with dataset.file.open("rb") as handle, zipfile.ZipFile(handle) as archive:
                dataset._npz_arrays = [n.removesuffix(".npy") for n in archive.namelist()]
        except (OSError, ValueError, zipfile.BadZipFile):
            dataset._npz_arrays = None
    return dataset._npz_arrays


@dataclass(frozen=True)
class Hidden:
    dataset: Dataset
    reason: str


def _task_label(task: str) -> str:
    return str(Task(task).label).lower() if task in Task.values else task


def why_not(version: ModelVersion, dataset: Dataset) -> str | None:
    """None when ``dataset`` can evaluate ``version``; else why not, in a few words."""
    model_task, data_task = version.asset.task, dataset.task
    if dataset.format == "workload":  # requests to serve (audit/services/serving.py), whatever task it was given
        if model_task != Task.LANGUAGE_MODELING:
            return f"a serving workload needs a language model; this model's task is {_task_label(model_task)}"
        return None
    if Task.OTHER not in (model_task, data_task) and data_task not in TASKS_FITTING.get(model_task, {model_task}):
        return (f"a {_task_label(data_task)} dataset; this model's task is {_task_label(model_task)}")
    data = FORMAT_WORDS.get(dataset.format, dataset.format)
    if dataset.format in TEXT_FORMATS:
        if version.format != "hf":
            return (f"{data} is tokenised by the model's own tokenizer, which only a Hugging Face model "
                    f"brings (this version is {version.format})")
        if model_task == Task.IMAGE_CLASSIFICATION:
            return f"{data}; an image model takes arrays (NPZ)"
        if dataset.format == "text" and model_task not in (Task.LANGUAGE_MODELING, Task.OTHER):
            return "plain text measures a language model's perplexity; this model's task is " + _task_label(model_task)
    arrays = npz_arrays(dataset) if takes_token_ids(version) else None
    if arrays is not None and "input_ids" not in arrays:
        return (f"NPZ arrays {', '.join(arrays)}: a text model reads token ids, an array named input_ids "
                f"(or a text dataset its tokenizer reads)")
    return None


def dataset_menu(version: ModelVersion, datasets) -> tuple[list[Dataset], list[Hidden]]:
    """The datasets that fit ``version`` and the others with the reason, both in the given order."""
    offered, hidden = [], []
    for dataset in datasets:
        reason = why_not(version, dataset)
        if reason is None:
            offered.append(dataset)
        else:
            hidden.append(Hidden(dataset, reason))
    return offered, hidden


def check_dataset_fits(version: ModelVersion, dataset: Dataset | None) -> None:
    """Raise ValidationError (code ``dataset_unfit``) when ``dataset`` cannot evaluate ``version``."""
    from django.core.exceptions import ValidationError  # noqa: PLC0415

    if dataset is not None and (reason := why_not(version, dataset)):
        raise ValidationError(f"{dataset.name} does not fit this model: {reason}.", code="dataset_unfit")
