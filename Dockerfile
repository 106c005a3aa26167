# The riskatlas app for docker compose; the database is the compose file's PostGIS service.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 RISKATLAS_DATA_DIR=/data
WORKDIR /app
# pg_dump/pg_restore for `riskatlas backup` (the compose database is PostgreSQL 15 too).
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY api ./api
COPY geo ./geo
COPY frontend ./frontend
COPY migrations ./migrations
RUN pip install --no-cache-dir --no-deps .
VOLUME /data
EXPOSE 8000
CMD ["riskatlas", "serve", "--host", "0.0.0.0", "--port", "8000"]
