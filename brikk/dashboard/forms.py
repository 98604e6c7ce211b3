from datetime import datetime, time

from django import forms
from django.utils import timezone

from agents import rules
from agents.models import Agent
from brikk.lib.values import GuardedJSONDecoder, UnacceptableJSON

# Statuses a person may set from the dashboard; deletion has its own confirmed action.
SETTABLE_STATUSES = [(value, label) for value, label in Agent.Status.choices if value != Agent.Status.DELETED]


class MetadataField(forms.JSONField):
    """A JSON object (``rules.check_metadata``); an empty textarea means ``{}``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono"}))
        kwargs.setdefault("help_text", 'Optional JSON object, for example {"team": "billing"}.')
        # Parsed with the API's rules: no NaN/Infinity, and nesting bounded before parsing (no RecursionError).
        kwargs.setdefault("decoder", GuardedJSONDecoder)
        super().__init__(**kwargs)

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
