"""Energy Audit settings, read from the environment (django-environ).

With nothing set, the project runs as a zero-setup demo: SQLite and kombu's
filesystem broker under var/. Production names its services and secrets in the
environment (README.md, "Production settings").
"""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

# --- core -------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="insecure-dev-key-set-SECRET_KEY-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",  # failed password logins are counted and locked out (AXES_* below)
    "audit.apps.AuditConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # outside everything that answers (WhiteNoise, the refusals below): every response carries it
    "audit.csp.ContentSecurityPolicyMiddleware",
    # before anything reads the body (CSRF reads POST): an over-limit upload is refused unread
    "audit.uploadhandlers.UploadSizeLimitMiddleware",
    # NUL and unpaired surrogates anywhere in a request: 400, never a 500 from the database
    "audit.inputsafety.InvalidCharactersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]
# Password logins: django-axes counts failures per user name and client address (in the
# database, so every gunicorn worker counts together) and locks that pair out for a while.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # shared by every web process
# The client's address: the proxies the deployment declares, and no client-written header,
# decide it; the same function keys the API's throttles (audit/clientip.py).
AXES_CLIENT_IP_CALLABLE = "audit.clientip.client_ip"
# How many reverse proxies of ours stand in front of Django, each appending the address it saw
# to X-Forwarded-For (docker-compose.yml's nginx: 1). 0: the TCP peer is the client, and
# X-Forwarded-For / X-Forwarded-Proto are ignored as the client's own words.
AUDIT_TRUSTED_PROXY_COUNT = env.int("AUDIT_TRUSTED_PROXY_COUNT", default=0)

ROOT_URLCONF = "audit.urls"
WSGI_APPLICATION = "audit.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # |http_url in every template: a stored URL becomes a link only when it is http(s)
            "builtins": ["audit.templatetags.safeurl"],
        },
    },
]

# --- database ---------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- files --------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.path("STATIC_ROOT", default=VAR_DIR / "staticfiles"))
STORAGE_ROOT = Path(env.path("STORAGE_ROOT", default=VAR_DIR / "storage"))
MEDIA_ROOT = STORAGE_ROOT
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "STATICFILES_BACKEND",
            default="whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage",
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG
# Uploads: the whole model must fit the limit; larger request bodies stream to disk.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=512 * 1024 * 1024)
# An upload temporary file (energy-audit-upload-*) untouched this long was left by a killed web
# process: the reaper and the web processes remove it (audit/uploadhandlers.py)
UPLOAD_TEMP_MAX_AGE_S = env.int("UPLOAD_TEMP_MAX_AGE_S", default=6 * 3600)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o640
# The limit holds while the body streams (audit/uploadhandlers.py): a Content-Length over the
# limit plus the form's overhead is refused unread, and no file writes past the limit.
UPLOAD_FORM_OVERHEAD_BYTES = env.int("UPLOAD_FORM_OVERHEAD_BYTES", default=1024 * 1024)
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "audit.uploadhandlers.LimitedTemporaryFileUploadHandler",
]
# Archive caps, checked before anything is extracted.
ARCHIVE_MAX_MEMBERS = env.int("ARCHIVE_MAX_MEMBERS", default=1000)
ARCHIVE_MAX_TOTAL_BYTES = env.int("ARCHIVE_MAX_TOTAL_BYTES", default=4 * 1024**3)
ARCHIVE_MAX_RATIO = env.float("ARCHIVE_MAX_RATIO", default=100.0)

# --- measurement defaults -----------------------------------------------------
DEFAULT_GRID_INTENSITY_G_PER_KWH = env.float("DEFAULT_GRID_INTENSITY_G_PER_KWH", default=475.0)
DEFAULT_PUE = env.float("DEFAULT_PUE", default=1.0)
DEFAULT_CARBON_SOURCE = env.str(
    "DEFAULT_CARBON_SOURCE", default="world average 475 gCO2e/kWh (default)"
)
# Engine knobs, passed to the engine child with every audit (overridable per audit).
# Savings calculator on the report: electricity price per kWh and its currency.
ELECTRICITY_PRICE_PER_KWH = env.float("ELECTRICITY_PRICE_PER_KWH", default=0.15)
ELECTRICITY_CURRENCY = env.str("ELECTRICITY_CURRENCY", default="USD")
# Energy ratings (audit/reports/ratings.py): a class (task, hardware, measured or estimated) is
# rated only once it holds this many audited versions; below it pages and badges say "not rated".
ENERGY_RATING_MIN_GROUP = env.int("ENERGY_RATING_MIN_GROUP", default=5)
ENGINE_WINDOW_S = env.float("ENGINE_WINDOW_S", default=1.0)
ENGINE_TIME_CAP_S = env.float("ENGINE_TIME_CAP_S", default=20.0)
ENGINE_IDLE_S = env.float("ENGINE_IDLE_S", default=2.0)
# On GPUs the NVML counter updates about every 100 ms: windows of 10 s keep its resolution
# error under 1% (DESIGN.md, measurement method 2).
ENGINE_GPU_WINDOW_S = env.float("ENGINE_GPU_WINDOW_S", default=10.0)
ENGINE_GPU_TIME_CAP_S = env.float("ENGINE_GPU_TIME_CAP_S", default=60.0)
ENGINE_TIMEOUT_S = env.int("ENGINE_TIMEOUT_S", default=3000)

# --- Celery ---------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_FS_BROKER_DIR = Path(env.path("CELERY_FS_BROKER_DIR", default=VAR_DIR / "broker"))
# Hard limit on one audit task; the soft limit leaves time to record the failure.
AUDIT_TASK_HARD_LIMIT_S = env.int("AUDIT_TASK_HARD_LIMIT_S", default=3600)
AUDIT_TASK_SOFT_LIMIT_S = env.int("AUDIT_TASK_SOFT_LIMIT_S", default=AUDIT_TASK_HARD_LIMIT_S - 60)
# Redis/SQS redeliver an unacknowledged task after this long; it must exceed the hard
# limit or a running audit would be handed to a second worker.
CELERY_VISIBILITY_TIMEOUT_S = env.int(
    "CELERY_VISIBILITY_TIMEOUT_S", default=AUDIT_TASK_HARD_LIMIT_S + 600
)
AUDIT_MAX_ATTEMPTS = env.int("AUDIT_MAX_ATTEMPTS", default=3)
AUDIT_HEARTBEAT_S = env.float("AUDIT_HEARTBEAT_S", default=10.0)
AUDIT_STALE_AFTER_S = env.int("AUDIT_STALE_AFTER_S", default=120)
AUDIT_REAPER_INTERVAL_S = env.float("AUDIT_REAPER_INTERVAL_S", default=60.0)
# A queued audit not claimed this long after its message was sent is sent again (a broker
# restart without persistence loses queued messages). Audits wait for busy workers meanwhile.
AUDIT_RESEND_QUEUED_AFTER_S = env.int("AUDIT_RESEND_QUEUED_AFTER_S", default=1800)
WORKER_STALE_AFTER_S = env.int("WORKER_STALE_AFTER_S", default=120)

# --- cache: the throttles' counters ----------------------------------------------
# Shared by every web process when it is Redis, so a limit is the limit and not the limit times
# the number of gunicorn workers. CACHE_URL names it (redis://host:6379/1, locmemcache://);
# unset, it is the broker's Redis when the broker is Redis (keys under their own prefix),
# else each process's own memory (the zero-setup demo: one process). Nothing here clears the
# cache: cache.clear() would empty the broker's database too.
_BROKER_IS_REDIS = CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
CACHE_URL = env.str("CACHE_URL", default=CELERY_BROKER_URL if _BROKER_IS_REDIS else "locmemcache://")
CACHES = {"default": {**env.cache_url_config(CACHE_URL), "KEY_PREFIX": "energy-audit"}}

# --- email, security -------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="energy-audit@localhost")
# SMTP, used when EMAIL_BACKEND is django.core.mail.backends.smtp.EmailBackend.
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# Absolute links in notification emails (the audit's report page).
SITE_URL = env.str("SITE_URL", default="http://localhost:8000")

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Only a proxy of ours may say the request came in over HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if AUDIT_TRUSTED_PROXY_COUNT > 0 else None
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
CELERY_UNACKED_RESTORE_INTERVAL_S = env.int("CELERY_UNACKED_RESTORE_INTERVAL_S", default=10)

# --- REST API (/api/v1/, docs/API.md) ------------------------------------------------
REST_FRAMEWORK = {
    # Token first, so an anonymous request is answered 401 with WWW-Authenticate: Token.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # TokenAuthentication that answers 429 after too many bad tokens (audit/api/throttling.py)
        "audit.api.throttling.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # enforces CSRF on writes
    ],
    "DEFAULT_THROTTLE_RATES": {"token_failures": env.str("API_TOKEN_FAILURE_RATE", default="10/min")},
    # DRF's own throttles (if any view adds one) believe the same proxy chain as audit/clientip.py
    "NUM_PROXIES": AUDIT_TRUSTED_PROXY_COUNT,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "audit.api.pagination.StablePageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "audit.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
API_EXPORT_CHUNK_SIZE = env.int("API_EXPORT_CHUNK_SIZE", default=2000)
SPECTACULAR_SETTINGS = {
    "TITLE": "Energy Audit API",
    "DESCRIPTION": "Upload models and datasets, request energy audits, read and export their measurements, "
    "review them. Every figure carries its unit in its name. See docs/API.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # every operation documents the error answers the layers below the views give (400 401 403 404 429 413)
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "audit.api.schema_hooks.add_error_responses",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the vendored swagger-ui-dist under static/ (works offline).
    "SWAGGER_UI_DIST": f"/{STATIC_URL.strip('/')}/vendor/swagger-ui",
    "SWAGGER_UI_FAVICON_HREF": f"/{STATIC_URL.strip('/')}/vendor/swagger-ui/favicon-32x32.png",
    "ENUM_NAME_OVERRIDES": {
        "AuditStatusEnum": "audit.models.Audit.Status",
        "ReviewStatusEnum": "audit.models.Audit.ReviewStatus",
        "ReviewDecisionEnum": "audit.models.Review.Decision",
        "VariantStatusEnum": "audit.models.Variant.Status",
        "TaskEnum": "audit.models.Task",
    },
}

# --- carbon: grid region and the optional live provider -----------------------
# Region of the shipped table (workers/engine/data/grid_intensity.csv) used when neither the
# audit nor its team names one or an intensity; "" falls back to DEFAULT_GRID_INTENSITY_G_PER_KWH.
DEFAULT_GRID_REGION = env.str("DEFAULT_GRID_REGION", default="WORLD")
# Electricity Maps (live, average intensity of consumption): asked when the key is set; on any
# failure the audit uses the shipped table and records a warning.
ELECTRICITYMAPS_API_KEY = env.str("ELECTRICITYMAPS_API_KEY", default="")
ELECTRICITYMAPS_API_URL = env.str("ELECTRICITYMAPS_API_URL", default="https://api.electricitymap.org/v3")
ELECTRICITYMAPS_TIMEOUT_S = env.float("ELECTRICITYMAPS_TIMEOUT_S", default=3.0)
