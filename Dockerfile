# The application image for docker-compose.yml: every tier, one image, the locked dependencies.
FROM python:3.11-slim
# Spark (offline tier) needs a JVM.
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY recsys recsys
COPY shared shared
COPY offline offline
COPY nearline nearline
COPY online online
RUN uv sync --frozen --no-dev
ENV PATH="/app/.venv/bin:$PATH"
