# Brikk's reverse proxy: nginx from Debian's packages with deploy/nginx.conf (compose.yaml's "proxy" service).
# The placeholders of the template come from the environment at start (envsubst), so one image serves any
# upstream, port and body limit.
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx gettext-base curl \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/brikk /var/cache/brikk-nginx

COPY deploy/nginx.conf /etc/brikk/nginx.conf.template

ENV BRIKK_NGINX_LISTEN=8080 \
    BRIKK_UPSTREAM=web:8000 \
    BRIKK_EVENTS_UPSTREAM=events:8001 \
    BRIKK_MAX_BODY_BYTES=262144

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null http://127.0.0.1:${BRIKK_NGINX_LISTEN##*:}/healthz"]
CMD ["sh", "-c", "envsubst '${BRIKK_NGINX_LISTEN} ${BRIKK_UPSTREAM} ${BRIKK_EVENTS_UPSTREAM} ${BRIKK_MAX_BODY_BYTES}' < /etc/brikk/nginx.conf.template > /etc/brikk/nginx.conf && exec nginx -e stderr -p /var/cache/brikk-nginx/ -c /etc/brikk/nginx.conf -g 'daemon off;'"]
