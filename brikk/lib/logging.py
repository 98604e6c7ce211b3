"""Structured logging: one JSON object per line, carrying the request's correlation context."""

import logging

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from brikk.lib.context import current


class RequestContextFilter(logging.Filter):
    """Adds request_id, organization_id, actor_kind and actor_id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current()
        # django.request logs after the middleware has left the request: its request still knows the id.
        request_id = getattr(getattr(record, "request", None), "request_id", None)
        record.request_id = getattr(record, "request_id", None) or request_id or context.request_id
        record.organization_id = getattr(record, "organization_id", None) or context.organization_id
        record.actor_kind = getattr(record, "actor_kind", None) or context.actor_kind
        record.actor_id = getattr(record, "actor_id", None) or context.actor_id
        return True


class JsonFormatter(_BaseJsonFormatter):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s")
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_record, record, message_dict):
        super().add_fields(log_record, record, message_dict)
        # The request (a WSGIRequest object) is attached by Django's own loggers; it is not JSON.
        log_record.pop("request", None)
        log_record.pop("server_time", None)
        for key in ("organization_id", "actor_kind", "actor_id"):
            if log_record.get(key) is None:
                log_record.pop(key, None)
