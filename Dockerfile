# One image for the API, the workers and the Ray nodes. For GPU nodes build with
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 (the pin below is the CPU wheel).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY optimizers optimizers
COPY studies studies
COPY workers workers
COPY service service
COPY examples examples
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -e '.[service]'
EXPOSE 8000
CMD ["memtune", "serve", "--host", "0.0.0.0", "--no-worker"]
