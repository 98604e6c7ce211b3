"""Celery application: Redis as broker in production, eager in-process on embedded defaults."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brikk.settings")

app = Celery("brikk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
