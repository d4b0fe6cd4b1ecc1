"""Token guessing is throttled: after too many bad tokens from one client, every token from it
is refused with 429 (and Retry-After) until the count has fallen below the limit again.

DRF's throttles run after authentication, so a request with a wrong token (a 401) never
reaches them; this authentication class counts the failures itself. The rate is
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["token_failures"]`` (DRF's rate syntax). The client
is the address ``audit.clientip.client_ip`` finds (only the proxies the deployment declares are
believed), the same one django-axes keys on. The counts live in Django's cache, which is the
broker's Redis when that is Redis (audit/settings.py, CACHES), so every gunicorn worker counts
together; each failure is one atomic increment (Redis INCR), so concurrent guesses are all
counted. The window slides: the failures of the last period are counted in 60 slices, each
ageing out on its own.
Password logins (the login page) are throttled by django-axes (audit/settings.py).
"""
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import SimpleRateThrottle

from ..clientip import client_ip


class FailedTokenThrottle(SimpleRateThrottle):
    scope = "token_failures"
    BUCKETS = 60  # the period in slices (a second each for "10/min"): counts age out slice by slice

    def get_ident(self, request):
        return client_ip(request)

    def get_cache_key(self, request, view=None):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _slices(self, request) -> list[tuple[str, float]]:
        """(key, start time) of each slice of the last period, oldest first."""
        base = self.get_cache_key(request)
        self.now = self.timer()
        width = self.duration / self.BUCKETS
        newest = int(self.now // width)
        return [(f"{base}:{i}", i * width) for i in range(newest - self.BUCKETS + 1, newest + 1)]

    def failures(self, request) -> int:
        slices = self._slices(request)
        counts = self.cache.get_many([key for key, _ in slices])
        self._counted = [(counts.get(key, 0), start) for key, start in slices]
        return sum(n for n, _ in self._counted)

    def blocked(self, request) -> bool:
        return self.failures(request) >= self.num_requests

    def wait(self) -> float:
        """Seconds until enough of the oldest failures have aged out to be under the limit."""
        total = sum(n for n, _ in self._counted)
        for n, start in self._counted:  # a slice leaves the period one period after it began
            total -= n
            if n and total < self.num_requests:
                return max(1.0, start + self.duration - self.now)
        return 1.0

    def record_failure(self, request) -> None:
        key, _ = self._slices(request)[-1]
        self.cache.add(key, 0, self.duration + 1)
        try:
            self.cache.incr(key)  # atomic (Redis INCR): concurrent failures are all counted
        except ValueError:  # expired between add and incr
            self.cache.add(key, 1, self.duration + 1)


class ThrottledTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        if not request.META.get("HTTP_AUTHORIZATION"):
            return None  # no token offered: nothing to count
        throttle = FailedTokenThrottle()
        if throttle.blocked(request):
            raise Throttled(wait=throttle.wait(), detail="Too many failed token attempts from this client.")
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            throttle.record_failure(request)
            raise
