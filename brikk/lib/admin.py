"""Read-only admin for large append-only tables (audit rows, message logs).

Pagination never counts a whole large table.

Django's admin asks the paginator for ``count`` on every page. On a table of millions of rows a
``COUNT(*)`` scans all of them. Unfiltered, PostgreSQL's planner estimate (``pg_class.reltuples``,
kept fresh by autovacuum) is used; filtered, the count stops at ``COUNT_CAP`` rows.
"""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

COUNT_CAP = 10_000


class EstimatedCountPaginator(Paginator):
    @cached_property
    def count(self):
        queryset = self.object_list
        if not queryset.query.where:
            estimate = self._estimate(queryset)
            if estimate is not None:
                return estimate
        return queryset[:COUNT_CAP].count()  # COUNT over a LIMIT-ed subquery: bounded work

    @staticmethod
    def _estimate(queryset) -> int | None:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
            )
            row = cursor.fetchone()
        # -1 (never analyzed) or a small table: count exactly, it is cheap.
        if row is None or row[0] < COUNT_CAP:
            return None
        return int(row[0])


class ReadOnlyLargeTableAdmin(admin.ModelAdmin):
    """Browse only: no add, change or delete for anyone, no bulk actions, no full counts."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 100
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
