# syntax=docker/dockerfile:1.7
#
# One image definition, two targets:
#   api    - FastAPI service, `adaprune migrate` and the client CLI. No torch: the API never
#            imports it, so the image stays small (~250 MB) and starts fast. It installs the
#            package with its `[api]` extra, which pyproject.toml keeps free of torch.
#   worker - Celery GPU worker: torch first (from the index TORCH_VARIANT picks), then the
#            package with its `[worker]` extra, which pip finds already satisfied for torch.
# Split chosen: a shared builder stage makes the wheel once; both targets install that wheel
# on python:3.11-slim. TORCH_VARIANT=cuda uses the CUDA torch wheel, which bundles the CUDA
# runtime and cuDNN as nvidia-* wheels, so no nvidia/cuda base image is needed: the host only
# needs the NVIDIA driver and the NVIDIA Container Toolkit.
#
#   docker build --target api -t adaprune-api .
#   docker build --target worker --build-arg TORCH_VARIANT=cuda -t adaprune-worker .

ARG PYTHON_VERSION=3.11
ARG TORCH_VARIANT=cpu

FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ADAPRUNE_HOME=/var/lib/adaprune
RUN groupadd --system --gid 10001 adaprune \
 && useradd --system --uid 10001 --gid adaprune --home-dir /var/lib/adaprune --create-home \
      --shell /usr/sbin/nologin adaprune

FROM runtime AS builder
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM runtime AS api
COPY --from=builder /wheels /wheels
RUN pip install "$(ls /wheels/adaprune-*.whl)[api]" && rm -rf /wheels \
 && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
USER 10001:10001
WORKDIR /var/lib/adaprune
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["adaprune"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS torch-cpu
ARG TORCH_VERSION=2.13.0
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

FROM runtime AS torch-cuda
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu128
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" "torch==${TORCH_VERSION}"

FROM torch-${TORCH_VARIANT} AS worker
COPY --from=builder /wheels /wheels
RUN pip install "$(ls /wheels/adaprune-*.whl)[worker]" && rm -rf /wheels
COPY deploy/worker_probe.py /usr/local/bin/adaprune-worker-probe
ENV ADAPRUNE_METRICS_PORT=9100 \
    ADAPRUNE_HEARTBEAT_S=10
USER 10001:10001
WORKDIR /var/lib/adaprune
EXPOSE 9100
# A broker round trip (`celery inspect ping`) is slow, and a solo-pool worker busy with a job
# cannot answer it; reading the worker's own metrics endpoint is local and tells more: the
# process serves HTTP and, when busy, its job heartbeat is fresh.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/usr/local/bin/adaprune-worker-probe", "health"]
ENTRYPOINT ["adaprune"]
CMD ["worker", "--queue", "gpu"]
