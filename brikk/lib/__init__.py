"""Shared code every app may use: the error shape, the request context, pagination, log format and the
read-only admin base. It imports no app of the project (enforced by import-linter, see .importlinter)."""
