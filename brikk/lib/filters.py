"""Filter fields shared by the API and the dashboard (coordination.filters, audit.filters).

``IsoDateTimeFilter``: django-filter's, refusing a date-time that Python cannot move to UTC (year 1 with a
positive offset, year 9999 with a negative one). Such a value used to reach the database adapter, which
converts to UTC, and answer 500; now it is a validation error like any other bad filter (422 in the API).
"""

from datetime import UTC

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

OUT_OF_RANGE = "Enter a date/time between years 1 and 9999 in UTC."


class UTCIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value):
        value = super().to_python(value)
        if value is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise ValidationError(OUT_OF_RANGE, code="overflow") from None
        return value


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField
