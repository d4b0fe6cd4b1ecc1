"""Review pages: the lead's review queue, a decision or comment posted from the report, the
team's energy budgets, and the user's account page (API token)."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from ..api.tokens import api_token_create, api_token_revoke
from ..models import EnergyBudget, ModelAsset, Review
from ..selectors import audits_for_user, teams_for_user
from ..services.budgets import LIMIT_FIELDS, budget_create, budget_delete, budget_update
from ..services.reviews import review_create, review_queue_for_user, teams_led_by


@login_required
def review_queue(request):
    leads = teams_led_by(request.user)
    audits = review_queue_for_user(request.user)[:200]
    return render(request, "audit/review_queue.html", {"audits": audits, "lead_teams": leads})


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=Review.Decision.choices)
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    acknowledge_low_quality = forms.BooleanField(required=False)


# A refused review, kept for the next page of the same audit: its error is shown beside the
# buttons (the page opens at the form, not at the top where messages are), with what was typed.
REVIEW_REFUSED_KEY = "review_refused"
RECORDED = {"approved": "Approval recorded.", "changes-requested": "Change request recorded.",
            "comment": "Comment recorded."}


def _refused(request, audit, errors: list[str]):
    request.session[REVIEW_REFUSED_KEY] = {
        "audit": audit.pk,
        "errors": errors,
        "comment": request.POST.get("comment", "")[:10_000],
        "decision": request.POST.get("decision", ""),
    }
    return redirect(audit.get_absolute_url() + "#review-form")


def pop_refused_review(request, audit) -> dict | None:
    """The refused review of this audit posted just before (once), or None."""
    session = getattr(request, "session", None)
    state = session.get(REVIEW_REFUSED_KEY) if session is not None else None
    if not state or state.get("audit") != audit.pk:
        return None
    del session[REVIEW_REFUSED_KEY]
    return state


@login_required
@require_POST
def audit_review(request, pk: int):
    audit = get_object_or_404(audits_for_user(request.user), pk=pk)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        return _refused(request, audit, ["Choose a decision."])
    # PermissionDenied (a member deciding) propagates: 403.
    try:
        review = review_create(user=request.user, audit=audit, **form.cleaned_data)
    except ValidationError as exc:
        return _refused(request, audit, exc.messages)
    messages.success(request, RECORDED.get(review.decision, "Review recorded."))
    return redirect(audit.get_absolute_url() + "#reviews")


class BudgetForm(forms.ModelForm):
    class Meta:
        model = EnergyBudget
        fields = ["team", "name", "model_asset", "batch_size", "boundary", *LIMIT_FIELDS]
        labels = {
            "model_asset": "Model",
            "boundary": "Energy boundary (empty: the team's)",
            "max_j_per_inference": "Max J per inference",
            "max_wh_per_1000_inferences": "Max Wh per 1,000 inferences",
            "max_latency_p95_ms": "Max latency p95 (ms)",
            "max_accuracy_drop": "Max accuracy drop (percentage points)",
            "max_j_per_output_token": "Max J per output token (generative models)",
            "max_ttft_ms_p95": "Max time to first token p95 (ms)",
            "max_tpot_ms_p95": "Max time per output token p95 (ms)",
            "min_fidelity": "Min fidelity to the baseline (0-1, e.g. 0.98)",
        }

    team = forms.ModelChoiceField(queryset=None, empty_label=None)

    def __init__(self, *args, lead_teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = lead_teams
        self.fields["model_asset"].queryset = ModelAsset.objects.filter(team__in=lead_teams).order_by("name")
        self.fields["model_asset"].required = False
        self.fields["model_asset"].empty_label = "— every model of the team —"


@login_required
def budget_list(request):
    lead_teams = teams_led_by(request.user)
    form = BudgetForm(request.POST or None, lead_teams=lead_teams) if lead_teams.exists() else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied("Only a team lead can set energy budgets.")
        if form.is_valid():
            data = dict(form.cleaned_data)
            try:
                budget = budget_create(user=request.user, **data)
            except ValidationError as exc:
                for message in exc.messages:
                    form.add_error(None, message)
            else:
                messages.success(request, f"Budget “{budget.name}” set; the team's audits were checked again.")
                return redirect("budget-list")
    budgets = (
        EnergyBudget.objects.filter(team__in=teams_for_user(request.user))
        .select_related("team", "model_asset", "created_by")
        .order_by("team__name", "name", "id")
    )
    led = set(lead_teams.values_list("pk", flat=True))
    rows = [{"budget": b, "can_edit": b.team_id in led} for b in budgets]
    return render(request, "audit/budgets.html", {"rows": rows, "form": form}, status=400 if form is not None and form.errors else 200)


def _team_budget(request, pk: int) -> EnergyBudget:
    return get_object_or_404(EnergyBudget.objects.filter(team__in=teams_for_user(request.user)), pk=pk)


@login_required
@require_POST
def budget_toggle(request, pk: int):
    budget = _team_budget(request, pk)
    budget = budget_update(user=request.user, budget=budget, active=not budget.active)
    messages.info(request, f"Budget “{budget.name}” {'activated' if budget.active else 'paused'}.")
    return redirect("budget-list")


@login_required
@require_POST
def budget_remove(request, pk: int):
    budget = _team_budget(request, pk)
    name = budget.name
    budget_delete(user=request.user, budget=budget)
    messages.info(request, f"Budget “{name}” deleted.")
    return redirect("budget-list")


@login_required
def account(request):
    if request.method == "POST":
        if request.POST.get("action") == "create":
            # Shown once, on the page this redirect leads to (a reload does not create another).
            request.session["new_api_token"] = api_token_create(user=request.user).key
        elif request.POST.get("action") == "revoke":
            if api_token_revoke(user=request.user):
                messages.info(request, "API token revoked: it no longer works.")
        return redirect("account")
    new_key = request.session.pop("new_api_token", None)
    token = Token.objects.filter(user=request.user).first()
    return render(
        request,
        "audit/account.html",
        {
            "token": token,
            "new_key": new_key,
            "memberships": request.user.memberships.select_related("team").order_by("team__name"),
        },
    )
