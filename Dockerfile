# Brikk production image: gunicorn (brikk/gunicorn.conf.py) serving Django, static files by whitenoise.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/brikk-prometheus \
    BRIKK_ARCHIVE_DIR=/var/lib/brikk/archive \
    BRIKK_AUDIT_CHECKPOINT_FILE=/var/lib/brikk/audit-checkpoints.jsonl

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic needs settings that import, not real secrets: throwaway values for this one step.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-secret-0123456789-0123456789-0123456789 \
    BRIKK_ENCRYPTION_KEYS=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk= \
    python manage.py collectstatic --no-input \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin brikk \
 && mkdir -p /var/lib/brikk/archive /tmp/brikk-prometheus \
 && chown -R brikk:brikk /var/lib/brikk /tmp/brikk-prometheus

USER brikk
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
CMD ["gunicorn", "-c", "brikk/gunicorn.conf.py", "brikk.wsgi:application"]
