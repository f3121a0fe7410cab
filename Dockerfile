# rentgate under gunicorn. Build: docker build -t rentgate .
# Settings come from the environment; .env.example lists them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 rentgate

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

# rentgate finds migrations/ in the working folder, and the server reads
# gunicorn.conf.py from it.
COPY alembic.ini gunicorn.conf.py ./
COPY migrations ./migrations

USER rentgate
ENV RENTGATE_BIND=0.0.0.0:8000 \
    RENTGATE_ENV=production
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["gunicorn", "--config", "/app/gunicorn.conf.py", "rentgate.wsgi:app"]
