import json
import uuid
from datetime import datetime, time

from django import forms
from django.conf import settings
from django.utils import timezone

from agents import rules
from agents.models import Agent
from brikk.dashboard import wording
from brikk.lib.values import GuardedJSONDecoder, UnacceptableJSON

# The most dead letters one redrive may name (a page shows at most queries.INBOX_SHOWN).
REDRIVE_MAX = 100

# Statuses a person may set from the dashboard; deletion has its own confirmed action.
SETTABLE_STATUSES = [(value, label) for value, label in Agent.Status.choices if value != Agent.Status.DELETED]


class MetadataField(forms.JSONField):
    """A JSON object (``rules.check_metadata``). An empty textarea means ``{}``, and no metadata is
    shown as an empty textarea (never ``null``); an object is shown indented, as everywhere else."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        attrs = {"rows": 4, "spellcheck": "false", "class": "mono", "placeholder": '{"team": "billing"}'}
        kwargs.setdefault("widget", forms.Textarea(attrs=attrs))
        kwargs.setdefault("help_text", 'Optional JSON object, for example {"team": "billing"}.')
        # Parsed with the API's rules: no NaN/Infinity, and nesting bounded before parsing (no RecursionError).
        kwargs.setdefault("decoder", GuardedJSONDecoder)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value  # what the person typed, kept as typed
        if value in (None, "", {}):
            return ""
        return wording.pretty_json(value)

    def has_changed(self, initial, data):
        try:
            data = self.to_python(data)
        except forms.ValidationError:
            return True
        return json.dumps(initial or {}, sort_keys=True) != json.dumps(data or {}, sort_keys=True)

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError as invalid:
            # Name what the decoder refused (NUL, NaN, nesting...) instead of "Enter a valid JSON.".
            cause = invalid.__cause__ or invalid.__context__
            if isinstance(cause, UnacceptableJSON):
                problem = cause.problem
                raise forms.ValidationError(rules.unstorable_message(problem), code=problem.reason) from None
            raise

    def clean(self, value):
        value = super().clean(value)
        if value in (None, ""):
            return {}
        return rules.check_metadata(value)


class AgentForm(forms.Form):
    name = forms.CharField(max_length=120, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    metadata = MetadataField()

    def __init__(self, *args, organization_id, instance: Agent | None = None, **kwargs):
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": instance.name,
                "description": instance.description,
                "metadata": instance.metadata,
            }
        super().__init__(*args, **kwargs)
        self.organization_id = organization_id
        self.instance = instance

    def clean_name(self):
        return rules.check_name_free(self.organization_id, self.cleaned_data["name"].strip(), agent=self.instance)


class AgentCreateForm(AgentForm):
    status = forms.ChoiceField(choices=SETTABLE_STATUSES, initial=Agent.Status.ACTIVE)
    key_expires_at = forms.DateField(
        required=False,
        label="Key expires on",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional; by default keys expire after the configured lifetime.",
    )

    def clean_key_expires_at(self):
        day = self.cleaned_data.get("key_expires_at")
        if day is None:
            return None
        if day <= timezone.localdate():
            raise forms.ValidationError("The expiry date must be in the future.")
        return timezone.make_aware(datetime.combine(day, time.min))


class AgentStatusForm(forms.Form):
    status = forms.ChoiceField(choices=SETTABLE_STATUSES)


# Grace periods offered when rotating a key, besides the configured default (BRIKK_API_KEY_ROTATION_GRACE_SECONDS,
# what the API uses when none is given); all within the API's limit (rules.MAX_ROTATION_GRACE_SECONDS).
GRACE_PRESETS = (0, 5 * 60, 3600, 86400, 7 * 86400)


def grace_choices() -> list[tuple[int, str]]:
    default = settings.BRIKK_API_KEY_ROTATION_GRACE_SECONDS
    choices = []
    for seconds in sorted({*GRACE_PRESETS, default}):
        label = "None: the current key stops working now" if seconds == 0 else wording.duration(seconds)
        choices.append((seconds, f"{label} (default)" if seconds == default else label))
    return choices


class RotateKeyForm(forms.Form):
    """How long the current keys keep working after a rotation (``services.rotate_key``). Not given,
    it is the configured default, as in the API."""

    grace_seconds = forms.TypedChoiceField(
        coerce=int,
        label="Grace period",
        help_text="How long the current key keeps working, so the agent can switch to the new one.",
    )

    def __init__(self, data=None, *args, **kwargs):
        if data is not None and not data.get("grace_seconds"):
            data = data.copy()
            data["grace_seconds"] = settings.BRIKK_API_KEY_ROTATION_GRACE_SECONDS
        super().__init__(data, *args, **kwargs)
        self.fields["grace_seconds"].choices = grace_choices()
        self.fields["grace_seconds"].initial = settings.BRIKK_API_KEY_ROTATION_GRACE_SECONDS


class PushEndpointForm(forms.Form):
    """A push endpoint's URL and description. The URL rule (https, no user info, public addresses only) is
    ``coordination.push_endpoints.check_url``, applied by the service the view calls."""

    url = forms.CharField(
        label="URL",
        max_length=2048,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "class": "mono", "inputmode": "url"}
        ),
        help_text="https:// only; its host must resolve to public addresses (or to BRIKK_WEBHOOK_ALLOWED_NETWORKS).",
    )
    description = forms.CharField(required=False, max_length=200)


class SwitchOrganizationForm(forms.Form):
    organization = forms.UUIDField()

    def __init__(self, *args, memberships, **kwargs):
        super().__init__(*args, **kwargs)
        self.memberships = memberships

    def clean_organization(self):
        wanted = self.cleaned_data["organization"]
        for membership in self.memberships:
            if membership.organization_id == wanted:
                return membership.organization
        raise forms.ValidationError("You are not a member of that organization.")


class UUIDListField(forms.Field):
    """Several ids of one name (``ids=…&ids=…``), each a UUID."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        values = value or []
        try:
            return [uuid.UUID(str(item)) for item in values]
        except ValueError:
            raise forms.ValidationError("Not a message id.", code="invalid") from None


class RedriveForm(forms.Form):
    """Dead letters to send back to their recipient's inbox: one (its row's button) or every one shown."""

    ids = UUIDListField(error_messages={"required": "Choose the dead letters to redrive."})

    def clean_ids(self):
        ids = self.cleaned_data["ids"]
        if len(ids) > REDRIVE_MAX:
            raise forms.ValidationError(f"Redrive at most {REDRIVE_MAX} at once.", code="too_many")
        return ids
