# syntax=docker/dockerfile:1
#
# autoseg on the official PyTorch CUDA runtime image. The base image's torch (built for its CUDA)
# is used as it is; autoseg and the rest of its dependencies go on top, at the versions pinned in
# docker/requirements.txt.
#
#   docker build -t autoseg .
#   docker run --rm --gpus all --ipc=host --user "$(id -u):$(id -g)" \
#     -v /srv/raw:/data/raw -v /srv/preprocessed:/data/preprocessed -v /srv/results:/data/results \
#     autoseg plan 4
#
# tests/test_docker.py keeps this file in step with pyproject.toml: the base image's torch and
# Python (BASE_TORCH, BASE_PYTHON) must satisfy pyproject's ranges, the pins must lie inside them.

# The base image: PyTorch's build of torch BASE_TORCH for CUDA BASE_CUDA, on Ubuntu 24.04.
ARG BASE_TORCH=2.11.0
ARG BASE_CUDA=12.8

# --- stage 1: the autoseg wheel (the source tree stays out of the final image) ---
FROM pytorch/pytorch:${BASE_TORCH}-cuda${BASE_CUDA}-cudnn9-runtime AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY autoseg/ autoseg/
COPY conf/ conf/
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- stage 2: the image ---
FROM pytorch/pytorch:${BASE_TORCH}-cuda${BASE_CUDA}-cudnn9-runtime
ARG BASE_TORCH
ARG BASE_CUDA
# The Python the base image comes with (Ubuntu 24.04's); checked while building.
ARG BASE_PYTHON=3.12
ARG AUTOSEG_VERSION=0.1.0

LABEL org.opencontainers.image.title="autoseg" \
      org.opencontainers.image.description="Self-configuring medical image segmentation (plan, train, predict)" \
      org.opencontainers.image.version="${AUTOSEG_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/pytorch/pytorch:${BASE_TORCH}-cuda${BASE_CUDA}-cudnn9-runtime" \
      org.autoseg.python.version="${BASE_PYTHON}" \
      org.autoseg.torch.version="${BASE_TORCH}"

# The data lives outside the image: mount the three folders here.
ENV AUTOSEG_RAW=/data/raw \
    AUTOSEG_PREPROCESSED=/data/preprocessed \
    AUTOSEG_RESULTS=/data/results \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fail the build, not the first training run, when the base image is not what this file says.
RUN python3 -c 'import os, sys, torch; \
found = ("%d.%d" % sys.version_info[:2], torch.__version__.split("+")[0], str(torch.version.cuda)); \
said = (os.environ["BASE_PYTHON"], os.environ["BASE_TORCH"], os.environ["BASE_CUDA"]); \
sys.exit(None if found == said else f"base image has Python, torch, CUDA {found}; the Dockerfile says {said}")'

# The base image's Python is Ubuntu's, marked "externally managed" (PEP 668): in a single-purpose
# image, installing beside torch is what we want. torch is held at the base image's exact build by
# a constraint, so pip fails rather than replace it.
COPY docker/requirements.txt /tmp/requirements.txt
RUN python3 -c 'import torch; print(f"torch=={torch.__version__}")' > /tmp/torch-constraint.txt \
    && python3 -m pip install --no-cache-dir --break-system-packages \
        -c /tmp/torch-constraint.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt /tmp/torch-constraint.txt

RUN --mount=type=bind,from=wheel,source=/wheels,target=/tmp/wheels \
    python3 -m pip install --no-cache-dir --break-system-packages --no-deps /tmp/wheels/autoseg-*.whl \
    && python3 -m pip check \
    && autoseg --help > /dev/null

# An unprivileged user; the data folders belong to it (or run with --user "$(id -u):$(id -g)").
RUN useradd --no-log-init --create-home --uid 10001 --user-group autoseg \
    && mkdir -p /data/raw /data/preprocessed /data/results \
    && chown -R autoseg:autoseg /data
USER 10001:10001
WORKDIR /data

ENTRYPOINT ["autoseg"]
CMD ["--help"]
