"""Energy rating: 1 to 5 within the same task and hardware class, by quintile of Wh per
1,000 inferences among the latest succeeded audit of every model version there.

Computed at read time in SQL (window functions over the candidates), so a new audit
re-rates its whole group the next time anyone looks; nothing is stored in the database.
The ranking is kept in the process until the set of succeeded audits changes (see
`ranking`).

- One entry per model version and hardware class: the latest succeeded audit with a
  measured baseline.
- The figure: the baseline variant's energy per sample at the smallest batch size the audit
  measured, as Wh per 1,000 one-sample inferences (equal to `wh_per_1000_inferences` at
  batch size 1, which the audit form asks for by default).
- Estimated energy (estimate-tdp) is ranked only against estimated energy, measured only
  against measured: the two are never mixed in one group.
- Hardware class: the GPU's name for CUDA audits, else the CPU model (see
  `hardware_class_expression`), the same rule as `selectors.describe_hardware`.
- Rating 5 is the most efficient fifth of its group, 1 the least:
  `5 - min(4, floor(percent_rank * 5))` with the group ordered by energy, so with n audits
  the cheapest is 5 and the dearest 1 (n >= 2).
- The population is every team's audits (the rating is a label, like an appliance's); a
  page shows only the ratings of its user's teams.
- Shown only once the group holds ``settings.ENERGY_RATING_MIN_GROUP`` audits (five by
  default): below that a quintile says nothing (the first audit of a class would be "5/5"),
  so pages and badges say "not rated: n of 5" in grey (`Rating.ranked`).
- Never a verdict colour on an audit whose quality grade is below the grade verdicts need
  (``workers.engine.quality.MIN_VERDICT_GRADE``, C): its rating is shown grey with the grade
  (`Rating.conclusive`).
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Case, Count, F, Max, TextField, Value, When, Window
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Coalesce, NullIf, RowNumber

from ..models import Audit, Measurement
from workers.engine import quality

UNKNOWN_HARDWARE = "unknown hardware"


@dataclass(frozen=True)
class Rating:
    model_version_id: int
    audit_id: int
    task: str
    hardware_class: str
    wh_per_1000: float  # Wh per 1,000 samples (one-sample inferences)
    rating: int
    group_size: int
    estimated: bool = False  # estimated energy is ranked only against estimated energy
    grade: str = ""  # the rated audit's quality grade ("" for a v1 result)

    @property
    def min_group(self) -> int:
        return min_group_size()

    @property
    def ranked(self) -> bool:
        """Enough audits in the group for a quintile to mean something."""
        return self.group_size >= self.min_group

    @property
    def conclusive(self) -> bool:
        """The rated audit's evidence is good enough for a verdict (grade C or better, or a v1
        result, which has no grade)."""
        return not self.grade or quality.at_least(self.grade)

    @property
    def shown(self) -> bool:
        """A rating in colour: ranked among enough audits, on conclusive evidence."""
        return self.ranked and self.conclusive

    @property
    def label(self) -> str:
        """What a page or badge says: "4/5", "not rated: 1 of 5", or "4/5 (grade D, inconclusive)"."""
        if not self.ranked:
            return f"not rated: {self.group_size} of {self.min_group}"
        if not self.conclusive:
            return f"{self.rating}/5 (grade {self.grade}, inconclusive)"
        return f"{self.rating}/5"

    @property
    def explanation(self) -> str:
        group = (f"{self.group_size} audited version{'s' if self.group_size != 1 else ''} of the same task on "
                 f"{self.hardware_class}{' with estimated energy' if self.estimated else ''}")
        if not self.ranked:
            return (f"Not rated: {group}; a rating (quintile of Wh per 1,000 samples) needs {self.min_group} "
                    "in the class")
        text = f"Energy rating among {group}: 5 is the most efficient fifth"
        if not self.conclusive:
            text += (f"; this audit's quality grade is {self.grade}, below the {quality.MIN_VERDICT_GRADE} a verdict "
                     "needs, so the rating is shown without its colour")
        return text


def min_group_size() -> int:
    return max(1, int(getattr(settings, "ENERGY_RATING_MIN_GROUP", 5)))


def hardware_class(fingerprint: dict | None, device: str = "cpu") -> str:
    """The Python twin of `hardware_class_expression`."""
    fp = fingerprint or {}
    if str(device).startswith("cuda"):
        gpu = fp.get("gpu")
        if isinstance(gpu, dict) and gpu.get("name"):
            return str(gpu["name"])
    cpu = fp.get("cpu") if isinstance(fp.get("cpu"), dict) else {}
    return str(fp.get("cpu_model") or cpu.get("model") or UNKNOWN_HARDWARE)


def hardware_class_expression(prefix: str = ""):
    text = TextField()

    def key(*path: str):
        # KT() cannot follow relations; KeyTransform over F() can.
        expr = F(f"{prefix}fingerprint")
        for name in path[:-1]:
            expr = KeyTransform(name, expr)
        return NullIf(KeyTextTransform(path[-1], expr), Value("", output_field=text), output_field=text)

    gpu_name = Case(When(**{f"{prefix}device__startswith": "cuda"}, then=key("gpu", "name")), default=None,
                    output_field=text)
    return Coalesce(
        gpu_name, key("cpu_model"), key("cpu", "model"), Value(UNKNOWN_HARDWARE, output_field=text), output_field=text,
    )


def candidates():
    """One row per model version and hardware class: its latest succeeded audit there with a measured baseline, the
    baseline's energy per sample at the smallest batch size measured, the task and the
    hardware class. One pass over the baseline measurements with a window (no correlated
    subquery per audit), so it stays fast with tens of thousands of audits."""
    audit = "variant__audit__"
    ranked = (
        Measurement.objects.filter(
            variant__recipe="baseline", variant__status="succeeded", variant__audit__status=Audit.Status.SUCCEEDED
        )
        .annotate(
            model_version_id=F(f"{audit}model_version_id"),
            team_id=F(f"{audit}model_version__asset__team_id"),
            audit_id=F(f"{audit}id"),
            task=F(f"{audit}model_version__asset__task"),
            hw=hardware_class_expression(audit),
            j_per_sample=F("energy_j_per_sample"),
            est=F("energy_estimated"),
            grade=F(f"{audit}quality_grade"),
            pick=Window(
                RowNumber(),
                # A version audited on two hardware classes is rated in each.
                partition_by=[F(f"{audit}model_version_id"), hardware_class_expression(audit)],
                order_by=[F(f"{audit}finished_at").desc(nulls_last=True), F(f"{audit}id").desc(), F("batch_size").asc()],
            ),
        )
        .order_by()
        .values("model_version_id", "audit_id", "team_id", "task", "hw", "est", "grade", "j_per_sample", "pick")
    )
    return ranked


def _ranked_sql(inner_qs) -> tuple[str, list]:
    sql, params = inner_qs.query.sql_with_params()
    q = connection.ops.quote_name
    ranked = (
        f"SELECT c.{q('model_version_id')} AS mv, c.{q('audit_id')} AS audit_id, c.{q('team_id')} AS team_id, "
        f"c.{q('task')} AS task, c.{q('hw')} AS hw, c.{q('est')} AS est, c.{q('grade')} AS grade, "
        f"c.{q('j_per_sample')} * 1000.0 / 3600.0 AS wh, "
        f"PERCENT_RANK() OVER (PARTITION BY c.{q('task')}, c.{q('hw')}, c.{q('est')} "
        f"ORDER BY c.{q('j_per_sample')}) AS pr, "
        f"COUNT(*) OVER (PARTITION BY c.{q('task')}, c.{q('hw')}, c.{q('est')}) AS n "
        f"FROM ({sql}) c WHERE c.{q('pick')} = 1"
    )
    return (f"SELECT mv, audit_id, team_id, task, hw, est, grade, wh, pr, n FROM ({ranked}) r "
            "ORDER BY wh DESC, audit_id",
            list(params))


def _rating_from_rank(pr: float) -> int:
    return 5 - min(4, int(pr * 5))


@dataclass(frozen=True)
class _Ranking:
    stamp: tuple
    rows: tuple  # (team_id, Rating), dearest first
    by_version: dict  # model_version_id -> [Rating], latest audit first


# The ranking of every rated version, kept per process until the set of succeeded audits
# changes (its stamp: count, last id, last finish). A new or removed result re-rates on the
# next read; reads in between cost one small aggregate query instead of the window query
# over every audit (300 ms with 10,000 audits on a small machine; bench/web.py).
_ranking: _Ranking | None = None


def _stamp() -> tuple:
    agg = Audit.objects.filter(status=Audit.Status.SUCCEEDED).aggregate(n=Count("id"), last=Max("id"), at=Max("finished_at"))
    return (connection.alias, connection.settings_dict.get("NAME"), agg["n"], agg["last"], agg["at"])


def ranking() -> _Ranking:
    global _ranking
    stamp = _stamp()
    current = _ranking
    if current is not None and current.stamp == stamp:
        return current
    sql, params = _ranked_sql(candidates())
    rows = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for mv, audit_id, team_id, task, hw, est, grade, wh, pr, n in cursor.fetchall():
            rows.append((team_id, Rating(model_version_id=mv, audit_id=audit_id, task=task, hardware_class=hw,
                                         wh_per_1000=wh, rating=_rating_from_rank(pr or 0.0), group_size=n,
                                         estimated=bool(est), grade=grade or "")))
    by_version: dict[int, list[Rating]] = {}
    for _, rating in rows:
        by_version.setdefault(rating.model_version_id, []).append(rating)
    for ratings in by_version.values():
        ratings.sort(key=lambda r: r.audit_id, reverse=True)
    current = _Ranking(stamp=stamp, rows=tuple(rows), by_version=by_version)
    _ranking = current
    return current


def forget_ranking() -> None:
    global _ranking
    _ranking = None


def rating_for_version(model_version_id: int, *, task: str | None = None, hw: str | None = None) -> Rating | None:
    """A version's rating on a hardware class; without one, on that of its latest rated audit."""
    for rating in ranking().by_version.get(model_version_id, []):
        if (hw is None or rating.hardware_class == hw) and (task is None or rating.task == task):
            return rating
    return None


def ratings_for_teams(team_ids: list[int]) -> list[Rating]:
    """The ratings of the teams' model versions, dearest first."""
    if not team_ids:
        return []
    wanted = set(team_ids)
    return [rating for team_id, rating in ranking().rows if team_id in wanted]


def rating_spread(ratings: list[Rating]) -> dict[int, int]:
    """How many versions hold each rating; those not rated (too few in their class) and those
    on inconclusive evidence are left out, as their badges show no rating colour."""
    spread = {r: 0 for r in range(1, 6)}
    for rating in ratings:
        if rating.shown:
            spread[rating.rating] += 1
    return spread
