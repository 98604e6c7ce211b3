"""The ASGI application (uvicorn: brikk/uvicorn.sh, the compose ``events`` service), for the inbox's waiting
consumers above all: long polls and streams wait on the event loop, holding no thread (brikk/lib/asgi.py)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brikk.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402 - after setup

from brikk.health import require_static_files  # noqa: E402
from brikk.lib.asgi import LanedASGIHandler  # noqa: E402

application = LanedASGIHandler(threads=settings.BRIKK_ASGI_THREADS)

# With manifest static files and no manifest every HTML page would be a 500: refuse to start instead.
require_static_files()
