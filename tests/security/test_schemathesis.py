"""A bounded property-based run over the OpenAPI schema (schemathesis): every operation, with
generated valid and invalid inputs, as a member with a finished audit. No answer may be a
server error, and every status code must be one the schema documents. Fixed seed and a small
example budget, so the run is repeatable and short."""
import pytest
import schemathesis
from django.test.client import ClientHandler
from hypothesis import HealthCheck, Phase, seed, settings
from rest_framework.authtoken.models import Token

from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from ..api.helpers import finished_audit


def django_wsgi_app():
    """Django's test handler as a WSGI app: the requests share the test's database
    transaction, and connections are not closed between them."""
    handler = ClientHandler(enforce_csrf_checks=True)

    def app(environ, start_response):
        response = handler(environ)
        headers = list(response.items()) + [("Set-Cookie", c.output(header="")) for c in response.cookies.values()]
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        return response

    return app


schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", django_wsgi_app())


@pytest.fixture
def token(db, team, member):
    finished_audit(team, user=member)
    return Token.objects.create(user=member).key


@pytest.mark.django_db
@schema.parametrize()
@seed(20261203)
# generated cases only: schemathesis's coverage phase adds dozens of explicit cases per
# operation, which would take minutes here
@settings(max_examples=8, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx_or_undocumented_codes(case, token):
    case.call_and_validate(headers={"Authorization": f"Token {token}"},
                           checks=[not_a_server_error, status_code_conformance])
