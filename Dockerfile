# One image for every part; the command picks it: api, worker, projector, db upgrade.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements/prod.lock ./requirements/
COPY schemas ./schemas
COPY service ./service
COPY consumers ./consumers
COPY producers ./producers
RUN pip install -c requirements/prod.lock . && useradd --system --uid 10001 --home-dir /app batchsync

USER batchsync
ENV BATCHSYNC_HTTP_HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["batchsync"]
CMD ["api"]
