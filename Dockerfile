# email_service production image (issue 7): `email-service serve | worker | beat | db upgrade`.
# Multi-stage: dependencies installed by uv from uv.lock (--frozen, no dev tools), run as a non-root user.
# Build: docker build -t email-service .      Run everything: docker compose up (see compose.yaml).

FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN pip install uv==0.13.8
WORKDIR /app
# Dependencies first (a layer that changes only with uv.lock), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
COPY migrations ./migrations
RUN uv sync --frozen --no-dev

FROM python:3.11-slim-bookworm AS runtime
# libmagic1: python-magic reads the type of uploaded files from their bytes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin email-service \
    && mkdir -p /data /tmp/email-service-metrics \
    && chown 10001:10001 /data /tmp/email-service-metrics
WORKDIR /app
COPY --from=build --chown=root:root /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EMAIL_SERVICE_ENV=production \
    EMAIL_SERVICE_DATA_DIR=/data \
    PROMETHEUS_MULTIPROC_DIR=/tmp/email-service-metrics
USER 10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
CMD ["email-service", "serve", "--host", "0.0.0.0", "--port", "5000"]
