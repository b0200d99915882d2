# syntax=docker/dockerfile:1
#
# snowmon's container image.
#
#   docker build -t snowmon .
#   docker run -v snowmon-data:/var/lib/snowmon \
#     -v "$PWD/snowmon.toml:/etc/snowmon/snowmon.toml:ro" --env-file .env -p 8080:8080 snowmon
#
# Stage 1 builds the wheel from pyproject.toml and monitor/ (.dockerignore lets nothing
# else in); stage 2 installs that wheel into a virtual environment on a fresh slim Python
# and runs it as an unprivileged user. Config is a mounted file, secrets come from mounted
# files or the environment (`file:` / `env:` references), state lives on a volume.
# tests/assets/test_packaging.py performs these same steps in a clean virtual environment.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="snowmon" \
      org.opencontainers.image.description="Keeps a fleet of ServiceNow OAuth connections alive and watched." \
      org.opencontainers.image.source="https://github.com/snowmon/snowmon" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/snowmon/bin:$PATH

# A fixed numeric uid/gid, so Kubernetes can check runAsNonRoot and volumes can be
# prepared for it (deploy/kubernetes uses the same 10001).
RUN groupadd --system --gid 10001 snowmon \
    && useradd --system --uid 10001 --gid snowmon --no-create-home \
       --home-dir /var/lib/snowmon --shell /usr/sbin/nologin snowmon \
    && mkdir -p /var/lib/snowmon /etc/snowmon \
    && chown snowmon:snowmon /var/lib/snowmon \
    && chmod 0750 /var/lib/snowmon

# Only the wheel crosses over, through a bind mount: no source tree and no wheel file
# stay in a layer of the runtime image.
# The virtual environment gets no pip of its own: the base image's pip installs into it.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/snowmon \
    && pip --python /opt/snowmon/bin/python install /wheels/*.whl \
    && snowmon --version

# The SQLite store (and anything else the daemon keeps) lives here.
VOLUME ["/var/lib/snowmon"]
WORKDIR /var/lib/snowmon
USER 10001:10001
EXPOSE 8080

# slim images have no curl: ask /healthz with the standard library. Override the URL
# with SNOWMON_HEALTHZ_URL when web.listen is not port 8080.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('SNOWMON_HEALTHZ_URL', 'http://127.0.0.1:8080/healthz'), timeout=4)"]

# SIGTERM drains: no new work, refreshes in flight finish, state is written, exit 0,
# well within the 30 s Kubernetes and Docker give before SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["snowmon"]
CMD ["run", "--config", "/etc/snowmon/snowmon.toml"]
