import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brikk.settings")

application = get_wsgi_application()

# With manifest static files and no manifest every HTML page would be a 500: refuse to start instead.
from brikk.health import require_static_files  # noqa: E402 - needs the settings loaded above

require_static_files()
