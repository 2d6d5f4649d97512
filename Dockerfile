# syntax=docker/dockerfile:1
# One image for every tongke process: web (`tongke serve`), job worker (`tongke worker`),
# SFU media worker (`tongke sfu`) and the one-shot migration step (`tongke db upgrade`).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- vendor: front-end libraries from npm, pinned and integrity-checked (never a CDN) ---
FROM node:20-bookworm-slim AS vendor
WORKDIR /src
COPY deploy/fetch-vendor.sh deploy/
RUN deploy/fetch-vendor.sh

# --- build: install the package and its dependencies into a self-contained venv ---
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/tongke
ENV PATH="/opt/tongke/bin:${PATH}"

WORKDIR /src
COPY . .
COPY --from=vendor /src/web/static/vendor web/static/vendor
RUN pip install --upgrade pip \
 && pip install .

# --- ffmpeg: a lean ffmpeg for recordings' web versions (TONGKE_RECORDING_FFMPEG) ---
# Built from the runtime's own ffmpeg source package (the same version: installing `ffmpeg`
# here makes the script pick it) with only what tongke runs and x264/vpx/opus linked in:
# the same output byte for byte, ~45 MiB less per run (docs/deployment.md). ~5 min on 2
# cores; Docker's cache keeps it until the script or the base image changes, so after a
# security update of ffmpeg or its libraries build with --pull --no-cache.
FROM ${PYTHON_IMAGE} AS ffmpeg
COPY deploy/build-lean-ffmpeg.sh /src/
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config dpkg-dev ffmpeg \
 && bash /src/build-lean-ffmpeg.sh /opt/tongke-ffmpeg

# --- runtime: slim image with ffmpeg (recording processing) and a non-root user ---
FROM ${PYTHON_IMAGE} AS runtime

# Debian's ffmpeg stays for ffprobe and the composition of 教研 meetings
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

COPY --from=ffmpeg /opt/tongke-ffmpeg /opt/tongke-ffmpeg

# A named volume mounted on the media root copies this ownership on first use.
RUN groupadd --system --gid 10001 tongke \
 && useradd --system --uid 10001 --gid tongke --home-dir /app --shell /usr/sbin/nologin tongke \
 && mkdir -p /app /var/lib/tongke/media \
 && chown -R tongke:tongke /app /var/lib/tongke

COPY --from=build /opt/tongke /opt/tongke

ENV PATH="/opt/tongke/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TONGKE_ENVIRONMENT=production \
    TONGKE_HOST=0.0.0.0 \
    TONGKE_PORT=8000 \
    TONGKE_MEDIA_ROOT=/var/lib/tongke/media \
    TONGKE_RECORDING_FFMPEG=/opt/tongke-ffmpeg/bin/ffmpeg \
    TONGKE_LOG_JSON=true

WORKDIR /app
USER tongke

EXPOSE 8000

# Only meaningful for `tongke serve`; compose overrides it for the worker and SFU.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TONGKE_PORT', '8000'), timeout=4)"]

CMD ["tongke", "serve"]
