"""Settings of the bare reference project: nothing installed, no middleware, no database, no templates."""

import secrets

DEBUG = False
SECRET_KEY = secrets.token_urlsafe(50)  # signs nothing here; Django only requires one
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.bare.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
WSGI_APPLICATION = "bench.bare.wsgi.application"
LOGGING_CONFIG = None  # Django's default logging would add nothing but work
