# One image for the API, the workers and the Ray nodes. For GPU nodes build with
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 (the pin below is the CPU wheel).
#
# The first stage builds memtune's wheel; the image installs that wheel (not an editable
# checkout), so what runs here is what `pip install memtune` gives a user.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY memtune memtune
RUN pip wheel --no-cache-dir --no-deps -w /dist .

FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# gcc (with libc6-dev): the memory optimizers' compiled steps are built on the worker at first
# use, the CPU kernels (memtune/optimizers/cpu_kernels.c) and inductor's code alike; without a
# compiler they fall back to the eager steps.
RUN apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist \
        gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /dist /dist
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" "$(ls /dist/memtune-*.whl)[service]" \
    && rm -rf /dist
# A user of its own (uid 1000, the Kubernetes manifests' runAsUser); /runs is where compose
# mounts the shared storage, owned by it so that a new named volume is too.
RUN useradd --uid 1000 --create-home memtune && mkdir /runs && chown memtune:memtune /runs
USER 1000
WORKDIR /srv
EXPOSE 8000
CMD ["memtune", "serve", "--host", "0.0.0.0", "--no-worker"]
