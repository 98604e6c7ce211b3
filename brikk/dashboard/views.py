"""Dashboard views: thin; domain changes go through agents.services, queries through filters.

Every tab is its own URL. A direct load renders the whole page; an HTMX request (a tab switch)
renders only the tab's content into ``#main`` (see ``render_page``). A live panel is a
``{% partialdef name inline %}`` in its page's template; its polling URL renders just that partial
(see ``render_fragment``).
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import services
from agents.models import Agent
from agents.scoping import SESSION_KEY
from audit.models import AuditLog
from brikk.dashboard import queries, wording
from brikk.dashboard.access import dashboard_view
from brikk.dashboard.filters import DashboardAuditFilter, DashboardMessageFilter, without_blanks
from brikk.dashboard.forms import (
    AgentCreateForm,
    AgentForm,
    AgentStatusForm,
    PushEndpointForm,
    RedriveForm,
    RotateKeyForm,
    SwitchOrganizationForm,
)
from brikk.dashboard.pagination import NEWER, OLDER, paginate
from coordination import answers, inbox, push_endpoints
from coordination.exceptions import Conflict
from coordination.models import MessageLog, PushEndpoint

PAGE_SIZE = 50


def is_partial(request) -> bool:
    """An HTMX swap of the main area (a back-button history restore needs the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def render_page(request, template: str, context: dict | None = None, *, tab: str = "", status: int = 200):
    context = {
        "base_template": "dashboard/partial_base.html" if is_partial(request) else "base.html",
        "workspace": request.workspace,
        "tab": tab,
        "poll_seconds": settings.BRIKK_DASHBOARD_POLL_SECONDS,
        **(context or {}),
    }
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request", "HX-History-Restore-Request"])
    return response


def render_fragment(request, template: str, context: dict):
    """A polled live panel: only the named partial of its page (``"dashboard/page.html#name"``,
    django-template-partials), never cached."""
    context = {"workspace": request.workspace, "poll_seconds": settings.BRIKK_DASHBOARD_POLL_SECONDS, **context}
    response = render(request, template, context)
    patch_cache_control(response, no_store=True)
    return response


def render_secret(request, template: str, context: dict):
    """A page that shows a key or signing secret once: never stored by a browser or proxy."""
    response = render_page(request, template, context, tab="agents")
    patch_cache_control(response, no_store=True, private=True)
    # Keep the URL (no history entry to come back to a secret).
    response["HX-Push-Url"] = "false"
    return response


def go_to(request, url: str):
    """After a successful form post. A boosted (HTMX) form follows the redirect in the same
    request, swaps the page's content and pushes the final URL; a plain form just redirects."""
    return HttpResponseRedirect(url)


# --- Login, logout, organization --------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Django's login: authenticate() and login() fire the audited auth signals, and django-axes refuses
    password guessing with the policy of every login door (agents/login_guard.py)."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """POST only (Django's default); a GET would let any page log the user out."""


@require_POST
@dashboard_view()
def switch_organization(request):
    form = SwitchOrganizationForm(request.POST, memberships=request.workspace.memberships)
    if form.is_valid():
        organization = form.cleaned_data["organization"]
        # The same session key the API's session authentication reads (agents.scoping).
        request.session[SESSION_KEY] = str(organization.pk)
        messages.success(request, f"Switched to {organization.name}.")
    else:
        messages.error(request, "You are not a member of that organization.")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("dashboard:overview")
    return HttpResponseRedirect(next_url)


# --- Overview ---------------------------------------------------------------------------------


@require_GET
@dashboard_view()
def overview(request):
    context = queries.overview(request.organization_id, include_audit=request.workspace.can_audit)
    return render_page(request, "dashboard/overview.html", context, tab="overview")


@require_GET
@dashboard_view()
def overview_live(request):
    context = queries.overview(request.organization_id, include_audit=request.workspace.can_audit)
    return render_fragment(request, "dashboard/overview.html#overview_live", context)


# --- Agents -----------------------------------------------------------------------------------


def _agent(request, pk) -> Agent:
    """A live agent of the current organization, or 404 (another organization's agent included)."""
    return get_object_or_404(Agent.objects.live(), pk=pk, organization_id=request.organization_id)


@require_GET
@dashboard_view()
def agent_list(request):
    rows = queries.agent_rows(request.organization_id)
    return render_page(request, "dashboard/agents.html", {"rows": rows}, tab="agents")


@require_GET
@dashboard_view()
def agent_table(request):
    rows = queries.agent_rows(request.organization_id)
    return render_fragment(request, "dashboard/agents.html#agent_table", {"rows": rows})


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def agent_create(request):
    form = AgentCreateForm(request.POST or None, organization_id=request.organization_id)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        created = services.create_agent(
            request.workspace.organization,
            name=data["name"],
            owner=request.user,
            description=data["description"],
            metadata=data["metadata"],
            status=data["status"],
            key_expires_at=data["key_expires_at"],
            request=request,
        )
        context = {"agent": created.agent, "api_key": created.key.plaintext, "signing_secret": created.signing_secret}
        return render_secret(request, "dashboard/agent_credentials.html", context)
    return render_page(request, "dashboard/agent_form.html", {"form": form, "creating": True}, tab="agents")


@require_GET
@dashboard_view()
def agent_detail(request, pk):
    agent = _agent(request, pk)
    keys = list(agent.api_keys.all())
    context = {
        "agent": agent,
        "keys": keys,
        "current_key": queries.current_key(keys, timezone.now()),
        "status_form": AgentStatusForm(initial={"status": agent.status}),
        "endpoints": queries.push_endpoints_of(agent),
        "now": timezone.now(),
        **queries.agent_inbox(agent),
    }
    return render_page(request, "dashboard/agent_detail.html", context, tab="agents")


def _inbox_context(agent, **extra) -> dict:
    return {"agent": agent, **queries.agent_inbox(agent), **extra}


@require_GET
@dashboard_view()
def agent_inbox(request, pk):
    """The agent's inbox and dead letters, polled (its page's live panel)."""
    agent = _agent(request, pk)
    return render_fragment(request, "dashboard/agent_detail.html#agent_inbox", _inbox_context(agent))


@require_POST
@dashboard_view(write=True)
def agent_redrive(request, pk):
    """Send dead letters of this agent back to its inbox (coordination.inbox.redrive, which audits each one).
    An htmx post gets the refreshed panel and the outcome in words; a plain form post a redirect and a flash."""
    agent = _agent(request, pk)
    form = RedriveForm(request.POST)
    if form.is_valid():
        ids = queries.dead_letters_of(agent, form.cleaned_data["ids"])
        redriven = inbox.redrive(request.organization_id, ids, actor_id=str(request.user.pk))["redriven"] if ids else []
        level = messages.SUCCESS if redriven else messages.INFO
        feedback = wording.redriven(len(redriven), agent.name)
    else:
        level, feedback = messages.ERROR, " ".join(form.errors["ids"])
    if not is_partial(request):
        messages.add_message(request, level, feedback)
        return go_to(request, reverse("dashboard:agent-detail", args=[agent.pk]))
    context = _inbox_context(agent, feedback=feedback, feedback_tag=messages.DEFAULT_TAGS[level])
    return render_fragment(request, "dashboard/agent_redrive.html", context)


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def agent_edit(request, pk):
    agent = _agent(request, pk)
    form = AgentForm(request.POST or None, organization_id=request.organization_id, instance=agent)
    if request.method == "POST" and form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        if changes:
            services.update_agent(agent, request=request, user=request.user, **changes)
            messages.success(request, f"Saved {agent.name}.")
        return go_to(request, reverse("dashboard:agent-detail", args=[agent.pk]))
    return render_page(request, "dashboard/agent_form.html", {"form": form, "agent": agent}, tab="agents")


@require_POST
@dashboard_view(write=True)
def agent_status(request, pk):
    agent = _agent(request, pk)
    form = AgentStatusForm(request.POST)
    if form.is_valid():
        if form.cleaned_data["status"] != agent.status:
            services.update_agent(agent, request=request, user=request.user, status=form.cleaned_data["status"])
            messages.success(request, f"{agent.name} is now {wording.status_phrase(agent.status)}.")
    else:
        messages.error(request, "Choose one of the listed statuses.")
    return go_to(request, reverse("dashboard:agent-detail", args=[agent.pk]))


def _confirm(request, agent, action: str, **context):
    context = {"agent": agent, "action": action, **context}
    return render_page(request, "dashboard/agent_confirm.html", context, tab="agents")


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def agent_rotate(request, pk):
    """A new key, shown once; the current keys keep working for the chosen grace period."""
    agent = _agent(request, pk)
    form = RotateKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "GET" or not form.is_valid():
        return _confirm(request, agent, "rotate", form=form)
    grace_seconds = form.cleaned_data["grace_seconds"]
    now = timezone.now()
    replaced = sum(key.is_usable(now) for key in agent.api_keys.all())
    issued = services.rotate_key(agent, grace_seconds=grace_seconds, request=request, user=request.user)
    context = {
        "agent": agent,
        "api_key": issued.plaintext,
        "rotated": True,
        "grace_seconds": grace_seconds,
        "replaced_keys": replaced,
    }
    return render_secret(request, "dashboard/agent_credentials.html", context)


def _revoked(request, agent, prefixes: list[str]):
    if prefixes:
        messages.success(request, wording.keys_revoked(len(prefixes), agent.name))
    else:
        messages.info(request, f"{agent.name} had no live keys to revoke.")
    return go_to(request, reverse("dashboard:agent-detail", args=[agent.pk]))


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def agent_revoke(request, pk):
    """Revoke every key of the agent."""
    agent = _agent(request, pk)
    if request.method == "GET":
        return _confirm(request, agent, "revoke")
    return _revoked(request, agent, services.revoke_keys(agent, request=request, user=request.user))


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def agent_key_revoke(request, pk, prefix):
    """Revoke one key of the agent (by its prefix); its other keys keep working."""
    agent = _agent(request, pk)
    key = agent.api_keys.filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None:
        raise Http404("No live key with this prefix.")
    if request.method == "GET":
        return _confirm(request, agent, "revoke-key", key=key)
    return _revoked(request, agent, services.revoke_keys(agent, prefix=key.prefix, request=request, user=request.user))


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def agent_delete(request, pk):
    agent = _agent(request, pk)
    if request.method == "GET":
        return _confirm(request, agent, "delete")
    services.soft_delete_agent(agent, request=request, user=request.user)
    messages.success(request, f"Deleted {agent.name}; its keys are revoked and its history is kept.")
    return go_to(request, reverse("dashboard:agents"))


# --- Push endpoints ---------------------------------------------------------------------------
# Every change goes through coordination.push_endpoints (audited there), as the API's do.


def _endpoint(request, agent, endpoint_id) -> PushEndpoint:
    return get_object_or_404(PushEndpoint, pk=endpoint_id, agent_id=agent.pk, organization_id=request.organization_id)


def _back_to_agent(request, agent):
    return go_to(request, reverse("dashboard:agent-detail", args=[agent.pk]))


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def endpoint_create(request, pk):
    """Register a push endpoint; its signing secret is shown once."""
    agent = _agent(request, pk)
    form = PushEndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            issued = push_endpoints.create(agent, data["url"], data["description"], actor_id=request.user.pk)
        except ValidationError as refused:
            form.add_error(None, refused)
        except Conflict as conflict:
            form.add_error(None, str(conflict.detail))
        else:
            context = {"agent": agent, "endpoint": issued.endpoint, "secret": issued.secret}
            return render_secret(request, "dashboard/endpoint_secret.html", context)
    return render_page(request, "dashboard/endpoint_form.html", {"agent": agent, "form": form}, tab="agents")


def _endpoint_confirm(request, agent, endpoint, action: str):
    context = {"agent": agent, "endpoint": endpoint, "action": action}
    return render_page(request, "dashboard/endpoint_confirm.html", context, tab="agents")


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def endpoint_rotate(request, pk, endpoint):
    """A new signing secret, shown once; the old one still signs for BRIKK_WEBHOOK_SECRET_GRACE_HOURS."""
    agent = _agent(request, pk)
    found = _endpoint(request, agent, endpoint)
    if request.method == "GET":
        return _endpoint_confirm(request, agent, found, "rotate")
    issued = push_endpoints.rotate_secret(found, actor_id=request.user.pk)
    context = {
        "agent": agent,
        "endpoint": issued.endpoint,
        "secret": issued.secret,
        "rotated": True,
        "grace_seconds": settings.BRIKK_WEBHOOK_SECRET_GRACE_HOURS * 3600,
    }
    return render_secret(request, "dashboard/endpoint_secret.html", context)


@require_POST
@dashboard_view(write=True)
def endpoint_enable(request, pk, endpoint):
    agent = _agent(request, pk)
    found = _endpoint(request, agent, endpoint)
    try:
        push_endpoints.enable(found, actor_id=request.user.pk)
    except Conflict as conflict:
        messages.error(request, str(conflict.detail))
    else:
        messages.success(request, f"Pushing the messages of {agent.name} to {found.url}.")
    return _back_to_agent(request, agent)


@require_POST
@dashboard_view(write=True)
def endpoint_disable(request, pk, endpoint):
    agent = _agent(request, pk)
    found = _endpoint(request, agent, endpoint)
    push_endpoints.disable_by_person(found, actor_id=request.user.pk)
    messages.success(request, f"Push endpoint disabled: the messages of {agent.name} wait in its inbox.")
    return _back_to_agent(request, agent)


@require_http_methods(["GET", "POST"])
@dashboard_view(write=True)
def endpoint_delete(request, pk, endpoint):
    agent = _agent(request, pk)
    found = _endpoint(request, agent, endpoint)
    if request.method == "GET":
        return _endpoint_confirm(request, agent, found, "delete")
    push_endpoints.delete(found, actor_id=request.user.pk)
    messages.success(request, f"Deleted the push endpoint {found.url}; its delivery attempts are kept.")
    return _back_to_agent(request, agent)


# --- Audit ------------------------------------------------------------------------------------


def _page_args(request) -> dict:
    direction = NEWER if request.GET.get("direction") == NEWER else OLDER
    return {"cursor": request.GET.get("cursor") or None, "direction": direction, "size": PAGE_SIZE}


def _filter_query(request) -> str:
    """The current filters as a query string, without the page position and the fields left at
    their defaults (empty)."""
    params = without_blanks(request.GET) or {}
    for name in ("cursor", "direction"):
        params.pop(name, None)
    return params.urlencode() if params else ""


@require_GET
@dashboard_view(audit=True)
def audit_list(request):
    queryset = AuditLog.objects.filter(organization_id=request.organization_id)
    filterset = DashboardAuditFilter(request.GET, queryset=queryset)
    page = paginate(filterset.qs, **_page_args(request))
    for entry in page.items:
        entry.resource_url = queries.audit_resource_url(entry)
    queries.label_actors(page.items)
    context = {"filter": filterset, "page": page, "query": _filter_query(request)}
    return render_page(request, "dashboard/audit.html", context, tab="audit")


# --- Messages ---------------------------------------------------------------------------------


def _message_filter(request):
    queryset = MessageLog.objects.filter(organization_id=request.organization_id).select_related("sender", "recipient")
    return DashboardMessageFilter(request.GET, queryset=queryset, organization_id=request.organization_id)


def _message_page_context(request) -> dict:
    filterset = _message_filter(request)
    page = paginate(filterset.qs, **_page_args(request))
    return {
        "filter": filterset,
        "page": page,
        "query": _filter_query(request),
        "status_choices": MessageLog.Status.choices,
        "type_choices": MessageLog.Type.choices,
    }


@require_GET
@dashboard_view()
def message_list(request):
    return render_page(request, "dashboard/messages.html", _message_page_context(request), tab="messages")


@require_GET
@dashboard_view()
def message_rows(request):
    """The first page of the current filter, polled so new messages appear without a reload."""
    return render_fragment(request, "dashboard/messages.html#message_table", _message_page_context(request))


def _message_context(request, pk) -> dict:
    """A message of the current organization (or 404), its delivery timeline, what it answers and its replies."""
    message = get_object_or_404(
        MessageLog.objects.select_related("sender", "recipient", "in_reply_to"),
        pk=pk,
        organization_id=request.organization_id,
    )
    return {
        "message": message,
        "answer": answers.answer_of(message),
        "timeline": queries.delivery_timeline(message),
        "live": message.delivery_state in inbox.UNDELIVERED,
        **queries.message_relations(message),
    }


@require_GET
@dashboard_view()
def message_detail(request, pk):
    return render_page(request, "dashboard/message_detail.html", _message_context(request, pk), tab="messages")


@require_GET
@dashboard_view()
def message_delivery(request, pk):
    """The message's delivery and replies, polled while it waits in its recipient's inbox."""
    return render_fragment(request, "dashboard/message_detail.html#message_delivery", _message_context(request, pk))


@require_POST
@dashboard_view(write=True)
def message_resend(request, pk):
    """Send one message to its recipient again (coordination.push_endpoints.resend, audited)."""
    message = get_object_or_404(MessageLog, pk=pk, organization_id=request.organization_id)
    try:
        push_endpoints.resend(message, actor_id=request.user.pk)
    except Conflict as conflict:
        messages.error(request, str(conflict.detail))
    else:
        messages.success(request, "Sent the message again: it is queued for its recipient.")
    return go_to(request, reverse("dashboard:message-detail", args=[message.pk]))


# --- Echo test --------------------------------------------------------------------------------


@require_GET
@dashboard_view()
def echo(request):
    agents = Agent.objects.live().filter(organization_id=request.organization_id).order_by("name")
    context = {
        "senders": [agent for agent in agents if agent.can_authenticate],
        "recipients": [agent for agent in agents if agent.can_authenticate],
        "types": MessageLog.Type.choices,
        "endpoint": "/api/v1/coordination",
    }
    return render_page(request, "dashboard/echo.html", context, tab="echo")
