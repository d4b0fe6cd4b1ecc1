# One image for the web app and the workers. On a GPU host the pinned torch wheel from
# PyPI is the CUDA build; run the gpu worker with the NVIDIA container runtime.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# bubblewrap: the sandbox the engine child runs in (workers/engine/sandbox.py); libseccomp2:
# its seccomp filter. A worker that cannot build the sandbox refuses to start.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY audit ./audit
COPY workers ./workers
RUN pip install --no-cache-dir .
COPY . .
RUN DATABASE_URL=sqlite:////tmp/build.sqlite3 SECRET_KEY=build-only python manage.py collectstatic --noinput
# Not root: the engine child then cannot read the worker's /proc/<pid>/environ (the worker is
# non-dumpable), and a model that escaped its loader would hold no capabilities.
RUN useradd --create-home --uid 10001 audit && mkdir -p /data/storage && chown audit /data/storage
USER audit
EXPOSE 8000
CMD ["gunicorn", "audit.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
