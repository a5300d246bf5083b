# facetrain on a CUDA machine: `docker build -t facetrain .`, then e.g.
#   docker run --gpus all --shm-size 8g -v /data:/data -v /runs:/runs facetrain \
#       train --data-dir /data/pack --output-dir /runs --num-gpus 8 --model iresnet50 --loss arcface
# The GPU driver comes from the host (NVIDIA Container Toolkit); the image holds the CUDA
# runtime and the CUDA build of PyTorch pinned in pyproject.toml.
ARG BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

# a venv owned by the unprivileged user that runs the jobs
RUN useradd --create-home --uid 1000 facetrain
WORKDIR /opt/facetrain
COPY --chown=facetrain:facetrain pyproject.toml README.md ./
COPY --chown=facetrain:facetrain src ./src
RUN python3.11 -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install . && chown -R facetrain:facetrain /opt/venv
ENV PATH=/opt/venv/bin:$PATH

USER facetrain
WORKDIR /home/facetrain
ENTRYPOINT ["facetrain"]
CMD ["--help"]
