import pytest

from audit.reports.ratings import forget_ranking


@pytest.fixture(autouse=True)
def _fresh_ranking():
    """Each test starts without a remembered ranking (ids can repeat across rolled-back tests)."""
    forget_ranking()
    yield
    forget_ranking()
