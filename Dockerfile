# syntax=docker/dockerfile:1.7
# modelserve's image: docs/deploy.md, "Container image".
#
#   docker build -t modelserve:cpu .                          # CPU torch (the lock's)
#   docker build -t modelserve:gpu --build-arg VARIANT=gpu .  # CUDA torch (deploy/docker/torch-gpu.txt)
#   docker run -p 8000:8000 -v modelserve-data:/data modelserve:cpu
#
# Two stages: the build stage has compilers and pip's caches, the runtime stage only the venv.
# Every Python package comes from requirements/runtime.txt (the lock's pins without the development
# tools) with its hash checked. The runtime runs
# as an unprivileged user and writes only to /data (a volume) and /tmp, so it runs with a
# read-only root filesystem (mount a tmpfs or emptyDir on /tmp).

FROM python:3.11-slim-bookworm AS build
ARG VARIANT=cpu
# Compilers for any dependency that must build from source on this platform. build-essential
# is a metapackage whose version is fixed for the life of a Debian release (bookworm: 12.9).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/modelserve \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /src
COPY requirements/runtime.txt requirements/runtime.txt
COPY deploy/docker/install-deps.sh deploy/docker/torch-gpu.txt deploy/docker/
RUN --mount=type=bind,source=deploy/docker/wheels,target=/wheels \
    sh deploy/docker/install-deps.sh "$VARIANT"
COPY pyproject.toml README.md ./
COPY src/ src/
# The project itself, with no resolution: its dependencies are already the lock's. hatchling
# (its build backend) is in the lock, hence no build isolation.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip check

FROM python:3.11-slim-bookworm AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="modelserve" \
      org.opencontainers.image.description="Serve any Python model as a fast, validated, documented HTTP API" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.modelserve.variant="${VARIANT}"
# A fixed uid/gid, so that volume permissions and Kubernetes' runAsUser agree.
RUN groupadd --system --gid 10001 modelserve \
    && useradd --system --uid 10001 --gid modelserve --home-dir /data --no-create-home modelserve \
    && mkdir -p /data \
    && chown modelserve:modelserve /data
COPY --from=build /opt/modelserve /opt/modelserve
COPY examples/ /app/examples/
COPY deploy/docker/healthcheck.py /app/healthcheck.py
ENV PATH="/opt/modelserve/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODELSERVE_DATA_DIR=/data \
    MODELSERVE_SERVER__HOST=0.0.0.0 \
    MODELSERVE_SERVER__PORT=8000
WORKDIR /app
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
ENTRYPOINT ["modelserve"]
# The example models and the registry; give your own targets instead:
#   docker run ... modelserve:cpu serve /models/my_model.py --workers 2
CMD ["serve", "/app/examples/iris.py", "--registry"]
