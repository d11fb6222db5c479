# syntax=docker/dockerfile:1
# turnout in a container: the wheels are built in one stage, installed into a slim one that runs
# as a non-root user with its data directory (the ledger's journal, the key-hash secret, the
# SQLite file when there is no PostgreSQL) on a volume.
#
#   docker build -t turnout .
#   docker run -p 4000:4000 -e OPENAI_API_KEY -v turnout-data:/var/lib/turnout turnout
#
# docs/deployment.md says how to run one instance, several, or a Kubernetes release.
# tests/test_deployment_files.py runs these RUN, HEALTHCHECK and CMD commands in a fresh venv.

# the oldest Python turnout supports (pyproject.toml), the one its CI runs on
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# turnout's wheel and every dependency's, so that the runtime stage installs without an index
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/turnout \
 && /opt/turnout/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels turnout
RUN groupadd --system --gid 10001 turnout \
 && useradd --system --uid 10001 --gid turnout --home-dir /var/lib/turnout --create-home --shell /usr/sbin/nologin turnout
ENV PATH=/opt/turnout/bin:$PATH \
    TURNOUT_DATA_DIR=/var/lib/turnout \
    TURNOUT_LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER turnout
WORKDIR /var/lib/turnout
VOLUME ["/var/lib/turnout"]
EXPOSE 4000
# Readiness: 200 while serving (also "degraded" while the database is away, since serving goes
# on), 503 while starting, draining or when the ledger's journal cannot be written.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4000/health/ready', timeout=2)"]
# SIGTERM drains (server.drain_delay, then server.shutdown_grace): give `docker stop` a longer
# --time than their sum (the default 10 s is shorter than the default grace of 30 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["turnout"]
CMD ["serve", "--host", "0.0.0.0", "--port", "4000"]
