"""Token guessing is throttled: after too many bad tokens from one client, every token from it
is refused with 429 (and Retry-After) until the window has passed.

DRF's throttles run after authentication, so a request with a wrong token (a 401) never
reaches them; this authentication class counts the failures itself with DRF's
``SimpleRateThrottle`` (its rate syntax, client identification and cache). The rate is
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["token_failures"]``. The counts live in Django's
cache: give production a shared cache (every gunicorn worker then counts together).
Password logins (the login page) are throttled by django-axes (audit/settings.py).
"""
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import SimpleRateThrottle


class FailedTokenThrottle(SimpleRateThrottle):
    scope = "token_failures"

    def get_cache_key(self, request, view=None):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _load(self, request) -> None:
        self.key = self.get_cache_key(request)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]

    def blocked(self, request) -> bool:
        self._load(request)
        return len(self.history) >= self.num_requests

    def record_failure(self, request) -> None:
        self._load(request)
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)


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
