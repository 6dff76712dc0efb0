# syntax=docker/dockerfile:1
# One image for every role: `docker run IMAGE api|router|deliver|logsink` (ENTRYPOINT is `hookline`).
# Built in two stages so the runtime image carries the installed virtualenv and nothing else.

# Both stages start from the same Python 3.11 image: the virtualenv made in the first runs on the
# second's interpreter. `make image` builds without a registry by pointing this at a local Debian base.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what `pip install .` needs (see .dockerignore). pip compiles the .pyc files here, because the
# pods run with a read-only root filesystem and could not write them at start.
COPY pyproject.toml README.md ./
COPY hookline ./hookline
COPY schemas ./schemas
COPY producers ./producers
COPY api ./api
COPY processors ./processors
RUN python -m venv /opt/hookline \
 && /opt/hookline/bin/pip install . \
 && /opt/hookline/bin/hookline --version

FROM ${BASE_IMAGE}
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
RUN groupadd --system --gid 10001 hookline \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/hookline --no-create-home \
      --shell /usr/sbin/nologin hookline \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/hookline
COPY --from=build /opt/hookline /opt/hookline
ENV PATH=/opt/hookline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOOKLINE_HOME=/var/lib/hookline \
    HOOKLINE_LOG_FORMAT=json \
    HOOKLINE_API_HOST=0.0.0.0 \
    HOOKLINE_METRICS_HOST=0.0.0.0
WORKDIR /var/lib/hookline
USER 10001:10001
# api, router, deliver, logsink (metrics and probes; the API serves them on its HTTP port).
EXPOSE 8080 9102 9103 9104 9105
ENTRYPOINT ["hookline"]
CMD ["--help"]
