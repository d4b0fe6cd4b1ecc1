"""Energy ratings: quintiles within (task, hardware class), recomputed as audits arrive."""
import pytest

from audit.models import ModelAsset
from audit.reports.ratings import hardware_class, rating_for_version, rating_spread, ratings_for_teams

from ..factories import make_version
from .helpers import stored_audit, variant_doc

pytestmark = pytest.mark.django_db


def audit_with_energy(team, energy, *, name="m", label=None, fingerprint=None, device="cpu", task="classification"):
    version = make_version(team, name=name, label=label or f"v{energy}")
    ModelAsset.objects.filter(pk=version.asset_id).update(task=task)
    return stored_audit(team, [variant_doc("baseline", energy=energy)], model_version=version,
                        fingerprint=fingerprint, device=device)


def test_hardware_class_prefers_the_gpu_on_cuda():
    gpu_fp = {"cpu_model": "AMD EPYC", "gpu": {"name": "NVIDIA H100"}}
    assert hardware_class(gpu_fp, "cuda:0") == "NVIDIA H100"
    assert hardware_class(gpu_fp, "cpu") == "AMD EPYC"
    assert hardware_class({"cpu": {"model": "Test CPU"}}) == "Test CPU"
    assert hardware_class({}) == "unknown hardware"


def test_quintiles_within_task_and_hardware(team):
    audits = [audit_with_energy(team, e, name=f"m{i}") for i, e in enumerate([0.001, 0.002, 0.003, 0.004, 0.005])]
    ratings = {r.model_version_id: r for r in ratings_for_teams([team.pk])}
    assert [ratings[a.model_version_id].rating for a in audits] == [5, 4, 3, 2, 1]
    assert all(r.group_size == 5 and r.hardware_class == "Test CPU" for r in ratings.values())
    # Wh per 1,000 inferences at batch 1 (the smallest measured) of the baseline.
    assert ratings[audits[0].model_version_id].wh_per_1000 == pytest.approx(0.001 * 1000 / 3600)
    assert rating_spread(list(ratings.values())) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    # Other hardware and other tasks are other groups.
    gpu = audit_with_energy(team, 0.5, name="g", device="cuda", fingerprint={"cpu_model": "X", "gpu": {"name": "NVIDIA H100"}})
    text = audit_with_energy(team, 0.9, name="t", task="text-classification")
    assert rating_for_version(gpu.model_version_id).rating == 5 and rating_for_version(gpu.model_version_id).group_size == 1
    assert rating_for_version(text.model_version_id).group_size == 1


def test_new_audits_rerate_and_only_the_latest_per_version_counts(team):
    cheap = audit_with_energy(team, 0.001, name="a")
    dear = audit_with_energy(team, 0.004, name="b")
    assert rating_for_version(dear.model_version_id).rating == 1
    # A new, cheaper audit of the dear version replaces its old figure: it is now the cheapest.
    stored_audit(team, [variant_doc("baseline", energy=0.0005)], model_version=dear.model_version)
    assert rating_for_version(dear.model_version_id).rating == 5
    assert rating_for_version(cheap.model_version_id).rating == 1
    assert rating_for_version(dear.model_version_id, task="classification", hw="Test CPU").rating == 5


def test_failed_and_unmeasured_audits_are_not_rated(team, other_team):
    failed_only = audit_with_energy(team, 0.001, name="f")
    failed_only.variants.all().delete()
    assert rating_for_version(failed_only.model_version_id) is None
    assert ratings_for_teams([]) == []
    audit_with_energy(other_team, 0.001, name="other")
    assert ratings_for_teams([team.pk]) == []


def test_ranking_is_reused_until_an_audit_arrives(team, django_assert_num_queries):
    a = audit_with_energy(team, 0.002, name="a")
    assert rating_for_version(a.model_version_id).rating == 5
    with django_assert_num_queries(1):  # the stamp only
        assert rating_for_version(a.model_version_id).rating == 5
    audit_with_energy(team, 0.001, name="b")
    with django_assert_num_queries(2):  # the stamp changed: ranked again
        assert rating_for_version(a.model_version_id).rating == 1


def test_describe_hardware_reads_the_engines_fingerprint():
    from audit.selectors import describe_hardware

    assert describe_hardware({"cpu_model": "AMD EPYC", "cpu_logical_cores": 2}) == "AMD EPYC (2 cores)"
    assert describe_hardware({"cpu": {"model": "Test CPU", "logical_cores": 2}}) == "Test CPU (2 cores)"
    assert describe_hardware({"cpu_model": "X", "gpu": {"name": "NVIDIA H100"}}) == "NVIDIA H100"
    assert describe_hardware({}) == "unknown hardware"


def test_estimated_energy_is_ranked_apart_from_measured(team):
    from audit.models import Measurement

    estimated = [audit_with_energy(team, e, name=f"e{i}") for i, e in enumerate([0.001, 0.004])]
    measured = audit_with_energy(team, 0.002, name="rapl")
    Measurement.objects.filter(variant__audit=measured).update(energy_method="rapl", energy_estimated=False)
    ratings = {r.model_version_id: r for r in ratings_for_teams([team.pk])}
    assert ratings[measured.model_version_id].group_size == 1 and not ratings[measured.model_version_id].estimated
    assert [ratings[a.model_version_id].group_size for a in estimated] == [2, 2]
    assert all(ratings[a.model_version_id].estimated for a in estimated)
