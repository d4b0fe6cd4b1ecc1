"""A Content-Security-Policy header on every response (Django 5.2 has no built-in CSP; 6.0's
``django.middleware.csp`` would replace this).

Results are written by the engine child, which runs the uploaded model: every string in a
report is the attacker's. Templates escape it; this policy is the second wall. Scripts load
only from this site's own files (htmx, plotly, charts.js, app.js under /static/): no inline
script, no inline event handler, no ``javascript:`` URL, no eval. Figures and other data
reach scripts as ``<script type="application/json">`` (json_script), which is data, never run.
"""
DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    # 'unsafe-inline' for styles only: plotly sets style attributes and injects its own <style>
    # rules while drawing, templates size progress bars with style="width: N%", and Swagger UI's
    # page has an inline <style>. A style cannot run script; a hostile string still cannot add
    # one, as every template escapes it.
    "style-src": "'self' 'unsafe-inline'",
    # plotly's mode-bar icons and Swagger UI's images are data: URIs
    "img-src": "'self' data:",
    "font-src": "'self' data:",
    "connect-src": "'self'",  # htmx's progress polls, Swagger UI's schema fetch
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


POLICY = "; ".join(f"{name} {value}" for name, value in DIRECTIVES.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
