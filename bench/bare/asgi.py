"""The bare view under an ASGI server with Brikk's own ASGI handler (brikk.lib.asgi: ``BRIKK_ASGI_THREADS`` lanes),
so that "the bare view on Brikk's server configuration" differs from Brikk only by the application. Django's stock
handler would start a thread for every request."""

import os

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.bare.settings"
django.setup(set_prefix=False)

from brikk.lib.asgi import LanedASGIHandler  # noqa: E402 - after setup

application = LanedASGIHandler(threads=int(os.environ.get("BRIKK_ASGI_THREADS", "8")))
