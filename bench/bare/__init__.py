"""The reference of ``make bench``: a minimal Django project with one JSON view, no middleware, no database."""
