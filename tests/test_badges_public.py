"""Energy ratings that mean something, and a badge that can be embedded (issue 22).

- No rating until the class (task, hardware, measured or estimated) holds
  ENERGY_RATING_MIN_GROUP audited versions: the first audit of a class got a green "5/5", and of
  two language models one was 1/5 and the other 5/5.
- Never a rating colour on an audit too noisy for a verdict (grade D).
- The badge answered 404 to anyone logged out: a lead issues the audit a public, unguessable
  link, revokes it (the link then answers 404) and re-issues a new one.
"""
import re

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import Audit, ModelAsset
from audit.reports.ratings import forget_ranking

from .factories import make_version
from .reports.helpers import stored_audit, variant_doc

pytestmark = pytest.mark.django_db
GREY = 'fill="#5b6475"'
GREEN = 'fill="#0b6e4f"'


def audit_with_energy(team, energy, *, name, task="classification"):
    version = make_version(team, name=name, label="v1")
    ModelAsset.objects.filter(pk=version.asset_id).update(task=task)
    return stored_audit(team, [variant_doc("baseline", energy=energy)], model_version=version)


def rating_badge(page: str) -> re.Match:
    return re.search(r'<span class="badge([^"]*)" id="energy-rating" data-shown="(\w+)" title="([^"]*)">([^<]*)</span>',
                     page)


def test_the_first_audit_of_a_class_is_not_rated(member_client, team):
    audit = audit_with_energy(team, 0.002, name="first")
    page = member_client.get(audit.get_absolute_url()).content.decode()
    css, shown, title, text = rating_badge(page).groups()
    assert text == "rating not rated: 1 of 5 (est.)" and shown == "false"
    assert "rating r" not in css and "cancelled" in css  # grey, no rating colour
    assert "needs 5 in the class" in title
    svg = member_client.get(reverse("badge", args=[audit.model_version_id])).content.decode()
    assert "not rated: 1 of 5" in svg and GREY in svg and "/5 ·" not in svg


def test_two_language_models_are_not_one_best_and_one_worst(member_client, team):
    a = audit_with_energy(team, 0.010, name="gpt-a", task="text-generation")
    b = audit_with_energy(team, 0.020, name="gpt-b", task="text-generation")
    for audit in (a, b):
        text = rating_badge(member_client.get(audit.get_absolute_url()).content.decode()).group(4)
        assert text == "rating not rated: 2 of 5 (est.)"
    home = member_client.get(reverse("home")).content.decode()
    hungry = re.search(r'id="hungry".*?</table>', home, re.S).group(0)
    assert hungry.count("not rated: 2 of 5") == 2 and "1/5" not in hungry and "5/5" not in hungry
    assert "once it holds 5 audited versions" in home


def test_five_audits_rank_and_an_inconclusive_one_stays_grey(member_client, team):
    audits = [audit_with_energy(team, e, name=f"m{i}") for i, e in enumerate([0.001, 0.002, 0.003, 0.004, 0.005])]
    cheapest, dearest = audits[0], audits[-1]
    css, shown, title, text = rating_badge(member_client.get(cheapest.get_absolute_url()).content.decode()).groups()
    assert text == "rating 5/5 (est.)" and "rating r5" in css and shown == "true"
    assert "among 5 audited versions" in title
    text = rating_badge(member_client.get(dearest.get_absolute_url()).content.decode()).group(4)
    assert text == "rating 1/5 (est.)"
    assert GREEN in member_client.get(reverse("badge", args=[cheapest.model_version_id])).content.decode()
    # The cheapest audit's evidence too noisy for a verdict: grade D. Grades are stored with the
    # result, before the ranking is read; here it is changed afterwards, so the ranking is re-read.
    Audit.objects.filter(pk=cheapest.pk).update(quality_grade="D")
    forget_ranking()
    css, shown, title, text = rating_badge(member_client.get(cheapest.get_absolute_url()).content.decode()).groups()
    assert text == "rating 5/5 (grade D, inconclusive) (est.)" and "rating r" not in css and shown == "false"
    assert "below the C a verdict needs" in title
    svg = member_client.get(reverse("badge", args=[cheapest.model_version_id])).content.decode()
    assert GREY in svg and GREEN not in svg and "inconclusive" in svg


def test_the_minimum_class_size_is_a_setting(member_client, team, settings):
    settings.ENERGY_RATING_MIN_GROUP = 2
    cheap, dear = audit_with_energy(team, 0.001, name="a"), audit_with_energy(team, 0.002, name="b")
    assert rating_badge(member_client.get(cheap.get_absolute_url()).content.decode()).group(4) == "rating 5/5 (est.)"
    assert rating_badge(member_client.get(dear.get_absolute_url()).content.decode()).group(4) == "rating 1/5 (est.)"


def _manage(client, audit, action):
    return client.post(reverse("audit-badge-link", args=[audit.pk]), {"action": action})


def _public_url(page: str) -> str:
    url = re.search(r'<code id="badge-public-url">https?://[^/]+(/badges/a/[^<]+\.svg)</code>', page).group(1)
    return url


def test_a_lead_issues_revokes_and_reissues_the_public_badge_link(client, team, lead, member):
    audit = audit_with_energy(team, 0.002, name="embedded")
    client.force_login(lead)
    page = client.get(audit.get_absolute_url()).content.decode()
    assert "No public badge link" in page and 'value="issue"' in page
    response = _manage(client, audit, "issue")
    assert response.status_code == 302 and response["Location"].endswith("#badge-link")
    page = client.get(audit.get_absolute_url()).content.decode()
    url = _public_url(page)
    token = Audit.objects.get(pk=audit.pk).badge_token
    assert url == reverse("badge-public", args=[token]) and len(token) >= 40  # 32 random bytes
    assert 'value="revoke"' in page

    # Anyone, logged out: the SVG, the same words as the report page.
    anonymous = Client()
    public = anonymous.get(url)
    assert public.status_code == 200 and public["Content-Type"] == "image/svg+xml"
    svg = public.content.decode()
    assert svg.startswith("<svg") and "not rated: 1 of 5" in svg and f"audit #{audit.pk}" in svg
    assert "no-cache" in public["Cache-Control"] and public["X-Content-Type-Options"] == "nosniff"
    assert anonymous.get(reverse("badge", args=[audit.model_version_id])).status_code == 404  # the private one
    assert anonymous.get(url.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B"))).status_code == 404

    # A member sees the link but cannot revoke or issue it.
    client.force_login(member)
    page = client.get(audit.get_absolute_url()).content.decode()
    assert _public_url(page) == url and 'value="revoke"' not in page
    _manage(client, audit, "revoke")
    assert Audit.objects.get(pk=audit.pk).badge_token == token
    assert "Only a lead" in client.get(audit.get_absolute_url()).content.decode()
    assert anonymous.get(url).status_code == 200

    # The lead revokes: the old link answers 404; a new one works, the old one stays dead.
    client.force_login(lead)
    _manage(client, audit, "revoke")
    assert Audit.objects.get(pk=audit.pk).badge_token is None
    assert anonymous.get(url).status_code == 404
    assert "No public badge link" in client.get(audit.get_absolute_url()).content.decode()
    _manage(client, audit, "issue")
    new_url = _public_url(client.get(audit.get_absolute_url()).content.decode())
    assert new_url != url
    assert anonymous.get(new_url).status_code == 200 and anonymous.get(url).status_code == 404
    assert _manage(client, audit, "explode").status_code == 400


def test_outsiders_cannot_manage_a_badge_link(client, team, outsider):
    audit = audit_with_energy(team, 0.002, name="private")
    client.force_login(outsider)
    assert _manage(client, audit, "issue").status_code == 404
    assert Audit.objects.get(pk=audit.pk).badge_token is None
    client.logout()
    response = _manage(client, audit, "issue")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_badge_link_through_the_api(team, lead, member):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def api(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        return client

    audit = audit_with_energy(team, 0.002, name="pipeline")
    url = f"/api/v1/audits/{audit.pk}/badge-link/"
    lead_api, member_api = api(lead), api(member)
    assert lead_api.get(url).json() == {"badge_url": None}
    assert member_api.post(url, {"action": "issue"}, format="json").status_code == 403
    assert lead_api.post(url, {"action": "explode"}, format="json").status_code == 400
    issued = lead_api.post(url, {"action": "issue"}, format="json")
    assert issued.status_code == 200
    badge_url = issued.json()["badge_url"]
    token = Audit.objects.get(pk=audit.pk).badge_token
    assert badge_url == "http://testserver" + reverse("badge-public", args=[token])
    assert member_api.get(url).json() == {"badge_url": badge_url}  # members may read it
    anonymous = Client()
    svg = anonymous.get(badge_url)
    assert svg.status_code == 200 and svg["Content-Type"] == "image/svg+xml" and b"<svg" in svg.content
    assert lead_api.post(url, {"action": "revoke"}, format="json").json() == {"badge_url": None}
    assert anonymous.get(badge_url).status_code == 404
    # a running audit has no badge to link
    running = audit_with_energy(team, 0.002, name="later")
    Audit.objects.filter(pk=running.pk).update(status=Audit.Status.RUNNING)
    refused = lead_api.post(f"/api/v1/audits/{running.pk}/badge-link/", {"action": "issue"}, format="json")
    assert refused.status_code == 400 and "succeeded" in str(refused.json())
