# syntax=docker/dockerfile:1
# One image, three commands: `easyclaw api`, `easyclaw worker`, `easyclaw operator`
# (plus `easyclaw migrate` and `easyclaw metrics-mirror`). The chart picks the
# command per Deployment. tests/images/ replays the install step and every
# container command in a clean virtual environment, since no image is built there.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# pip's cache lives in a BuildKit cache mount (never in a layer), so it is kept.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/easyclaw
# The dependencies in a layer of their own, from the dependency list and the pins
# only: an edit to the sources reuses it, and a changed pin downloads only what
# changed (the cache mount keeps pip's downloads across builds).
COPY pyproject.toml constraints.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/easyclaw/bin/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
 && /opt/easyclaw/bin/pip install -c constraints.txt -r requirements.txt
# The sources last (.dockerignore is an allow-list: only these arrive here); this
# layer installs the package alone and checks nothing is missing.
COPY README.md ./
COPY src/ src/
COPY api/ api/
COPY worker/ worker/
COPY operator/ operator/
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/easyclaw/bin/pip install --no-deps -c constraints.txt . \
 && /opt/easyclaw/bin/pip check

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="easyclaw" \
      org.opencontainers.image.description="Kubernetes-native worker pool for AI-agent jobs, with PostgreSQL as the queue" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/easyclaw/easyclaw" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/easyclaw/bin:$PATH \
    EASYCLAW_API_HOST=0.0.0.0 \
    EASYCLAW_ENV=production
# Only the virtual environment crosses over: no pip cache, no build tools, no sources.
COPY --from=builder /opt/easyclaw /opt/easyclaw
RUN groupadd --system --gid 10001 easyclaw \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin easyclaw
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# Fits the api command; Kubernetes ignores it and uses the chart's probes instead.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('EASYCLAW_API_PORT', '8000') + '/healthz', timeout=2)"]
ENTRYPOINT ["easyclaw"]
CMD ["api"]
