"""The review workflow: roles enforced in the service, history kept, status follows the latest
decision, the requester is emailed; the review panel on the report, the lead's queue, the
account page's API token."""
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.authtoken.models import Token

from audit.models import Audit, EnergyBudget, Review
from audit.services.reviews import review_create, review_queue_for_user

from .api.helpers import finished_audit
from .factories import make_audit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def requester(member):
    member.email = "mia@example.org"
    member.save()
    return member


def test_member_cannot_approve_or_request_changes(member, team):
    audit = finished_audit(team, user=member)
    for decision in ("approved", "changes-requested"):
        with pytest.raises(PermissionDenied):
            review_create(user=member, audit=audit, decision=decision, comment="fine by me")
    assert Review.objects.count() == 0


def test_outsider_cannot_even_comment(outsider, team):
    audit = finished_audit(team)
    with pytest.raises(PermissionDenied):
        review_create(user=outsider, audit=audit, decision="comment", comment="hi")


def test_member_comments_without_changing_the_status(member, team):
    audit = finished_audit(team, user=member)
    review = review_create(user=member, audit=audit, decision="comment", comment="batch 32 too?")
    assert review.decision == "comment"
    assert Audit.objects.get(pk=audit.pk).review_status == "pending"
    with pytest.raises(ValidationError):
        review_create(user=member, audit=audit, decision="comment", comment="   ")


def test_lead_decisions_keep_history_and_email_the_requester(lead, requester, team, mailoutbox,
                                                             django_capture_on_commit_callbacks, settings):
    settings.SITE_URL = "https://audit.example.org"
    audit = finished_audit(team, user=requester)
    with django_capture_on_commit_callbacks(execute=True):
        review_create(user=lead, audit=audit, decision="changes-requested", comment="Measure at batch 8 on GPU.")
    assert Audit.objects.get(pk=audit.pk).review_status == "changes-requested"
    with django_capture_on_commit_callbacks(execute=True):
        review_create(user=requester, audit=audit, decision="comment", comment="Done in #2")
        review_create(user=lead, audit=audit, decision="approved")
    assert Audit.objects.get(pk=audit.pk).review_status == "approved"
    assert list(audit.reviews.values_list("decision", flat=True)) == ["changes-requested", "comment", "approved"]
    assert len(mailoutbox) == 2  # decisions only, not comments
    first, second = mailoutbox
    assert first.to == ["mia@example.org"] and "changes requested" in first.subject
    assert "Measure at batch 8 on GPU." in first.body
    assert f"https://audit.example.org/audits/{audit.pk}/" in first.body
    assert "approved" in second.subject


def test_changes_requested_needs_a_comment_and_only_succeeded_audits_are_decided(lead, team):
    audit = finished_audit(team)
    with pytest.raises(ValidationError) as err:
        review_create(user=lead, audit=audit, decision="changes-requested", comment="")
    assert "comment" in err.value.message_dict
    with pytest.raises(ValidationError):
        review_create(user=lead, audit=make_audit(team), decision="approved")


def test_mail_failure_does_not_lose_the_decision(lead, requester, team, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1
    audit = finished_audit(team, user=requester)
    with django_capture_on_commit_callbacks(execute=True):
        review_create(user=lead, audit=audit, decision="approved")
    assert Audit.objects.get(pk=audit.pk).review_status == "approved"


def render_panel(audit, user) -> str:
    request = RequestFactory().get("/")
    request.user = user
    return render_to_string("audit/_reviews.html", {"audit": audit, "user": user}, request=request)


def test_review_panel_leads_with_failures_and_shows_history(lead, member, team):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.003, max_latency_p95_ms=0.1)
    audit = finished_audit(team, user=member)
    review_create(user=member, audit=audit, decision="comment", comment="p95 looks high")
    html = render_panel(audit, lead)
    assert 'id="reviews"' in html and "p95 looks high" in html
    assert html.index("budget-fail") < html.index("budget-pass")  # failures first
    assert "2 limits failed." in html
    assert 'value="approved"' in html and 'value="changes-requested"' in html
    member_html = render_panel(audit, member)
    assert 'value="approved"' not in member_html and 'value="comment"' in member_html
    for bad in ("None", "nan"):
        assert bad not in html


def test_review_panel_is_quiet_without_budgets_or_reviews(lead, team):
    html = render_panel(finished_audit(team), lead)
    assert "No energy budget applies" in html and "No review yet." in html


def test_review_form_posts(client, lead, member, team):
    audit = finished_audit(team, user=member)
    client.force_login(member)
    assert client.post(reverse("audit-review", args=[audit.pk]), {"decision": "approved"}).status_code == 403
    client.force_login(lead)
    response = client.post(reverse("audit-review", args=[audit.pk]), {"decision": "approved", "comment": "ok"})
    assert response.status_code == 302 and response["Location"].endswith("#reviews")
    assert Audit.objects.get(pk=audit.pk).review_status == "approved"


def test_review_form_of_another_team_is_404(client, outsider, team):
    audit = finished_audit(team)
    client.force_login(outsider)
    assert client.post(reverse("audit-review", args=[audit.pk]), {"decision": "comment", "comment": "x"}).status_code == 404


def test_review_queue_page(client, lead, member, team, other_team):
    old, new = finished_audit(team, user=member), finished_audit(team, user=member)
    Audit.objects.filter(pk=old.pk).update(finished_at=new.finished_at.replace(year=2020), budget_verdict="fail")
    finished_audit(other_team)
    assert [a.pk for a in review_queue_for_user(lead)] == [old.pk, new.pk]
    client.force_login(lead)
    page = client.get(reverse("review-queue")).content.decode()
    assert page.index(f"#{old.pk}<") < page.index(f"#{new.pk}<")
    assert 'badge failed">fail' in page and ">Reviews</a>" in page
    client.force_login(member)
    page = client.get(reverse("review-queue")).content.decode()
    assert "You lead no team" in page and ">Reviews</a>" not in page


def test_account_page_creates_and_revokes_an_api_token(client, member, team):
    client.force_login(member)
    response = client.post(reverse("account"), {"action": "create"}, follow=True)
    assert response.redirect_chain == [(reverse("account"), 302)]
    page = response.content.decode()
    token = Token.objects.get(user=member)
    assert token.key in page
    api = client_with_token(token.key)
    assert api.get("/api/v1/audits/").status_code == 200
    assert token.key not in client.get(reverse("account")).content.decode()  # shown once
    client.post(reverse("account"), {"action": "revoke"})
    assert not Token.objects.filter(user=member).exists()
    assert api.get("/api/v1/audits/").status_code == 401


def client_with_token(key):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def test_the_include_needs_only_audit_in_its_context(lead, member, team):
    """The report page does `{% include "audit/_reviews.html" %}` with `audit` in its context."""
    from django.template import RequestContext, Template

    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.001)
    audit = finished_audit(team, user=member)
    request = RequestFactory().get("/")
    request.user = lead
    html = Template('{% include "audit/_reviews.html" %}').render(RequestContext(request, {"audit": audit}))
    assert 'id="reviews"' in html and "budget-fail" in html and 'value="approved"' in html
    assert "csrfmiddlewaretoken" in html


def test_report_page_shows_the_review_panel(client, lead, member, team):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.001)
    audit = finished_audit(team, user=member)
    client.force_login(lead)
    page = client.get(audit.get_absolute_url()).content.decode()
    assert 'id="reviews"' in page and "budget-fail" in page and 'value="approved"' in page


def test_approving_an_audit_graded_below_c_needs_the_warning_acknowledged(lead, team, client):
    from audit.models import Audit

    audit = finished_audit(team)
    Audit.objects.filter(pk=audit.pk).update(quality_grade="D", quality_reasons=["D: the baseline moved by 58%"])
    audit.refresh_from_db()
    with pytest.raises(ValidationError) as info:
        review_create(user=lead, audit=audit, decision="approved")
    assert "quality grade is D (D: the baseline moved by 58%)" in str(info.value)
    client.force_login(lead)
    page = client.get(audit.get_absolute_url()).content.decode()
    assert 'name="acknowledge_low_quality"' in page and "quality grade is D" in page
    review = review_create(user=lead, audit=audit, decision="approved", acknowledge_low_quality=True)
    assert review.decision == "approved"
    audit.refresh_from_db()
    assert audit.review_status == "approved"


def test_approving_an_audit_whose_budget_failed_needs_the_failure_acknowledged(
        lead, requester, team, mailoutbox, django_capture_on_commit_callbacks):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.0005)
    audit = finished_audit(team, user=requester)
    assert audit.budget_verdict == "fail"
    with pytest.raises(ValidationError) as info:
        review_create(user=lead, audit=audit, decision="approved")
    assert "2 budget limits failed (edge, baseline: 2 mJ [1.82, 2.2] > 500 µJ: fail" in str(info.value)
    with django_capture_on_commit_callbacks(execute=True):
        review_create(user=lead, audit=audit, decision="approved", acknowledge_low_quality=True)
    assert Audit.objects.get(pk=audit.pk).review_status == "approved"
    (mail,) = mailoutbox
    assert "Energy budgets: fail.\n- edge, baseline: 2 mJ [1.82, 2.2] > 500 µJ: fail" in mail.body


def test_approving_with_an_inconclusive_budget_names_the_limit_inside_the_interval(lead, team):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.0021)  # inside [1.82, 2.2] mJ
    audit = finished_audit(team)
    assert audit.budget_verdict == "inconclusive"
    with pytest.raises(ValidationError) as info:
        review_create(user=lead, audit=audit, decision="approved")
    assert "its budget verdict is inconclusive (edge, baseline: 2 mJ [1.82, 2.2] vs 2.1 mJ: inconclusive" in str(info.value)


def test_panel_and_report_show_each_limits_interval_grade_and_reason(client, lead, team):
    from .factories import measurement_doc, result_doc

    doc = result_doc()
    doc["variants"][0]["measurements"] = [measurement_doc(
        1, energy_j_per_inference=0.385, energy_uncertainty_rel=0.84, quality_grade="D",
        quality_reasons=["D: 95% interval of the mean latency is ±40.0%"])]
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.01)
    audit = finished_audit(team, result=doc)
    html = render_panel(audit, lead)
    assert "[117 mJ, 1.27 J]" in html and "grade D" in html
    assert "385 mJ [117, 1270] &gt; 10 mJ: fail (the whole 95% interval lies above the limit" in html
    client.force_login(lead)
    page = client.get(audit.get_absolute_url()).content.decode()
    summary = page[page.index('id="budget-summary"'):]
    assert "edge, baseline batch 1: 385 mJ [117, 1270] &gt; 10 mJ: fail" in summary[:2000]
