"""End to end in Debian's Chromium (Playwright) against a live server: the staff's daily path.

Saves a screenshot of each tab into docs/screenshots/ (committed, shown in docs/README-dashboard.md).
"""

import json
import os
import re
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from agents import keys, services
from agents.models import Agent, Membership
from coordination.models import MessageLog

# Playwright's sync API runs an event loop in this thread; the ORM calls in the test are still synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(django_settings.BASE_DIR) / "docs" / "screenshots"
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, settings):
    settings.BRIKK_DASHBOARD_POLL_SECONDS = 1  # live panels refresh quickly in the test
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors, console_errors = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"
    # Chromium reports every script, style, image or eval the Content-Security-Policy blocks on the console.
    violations = [text for text in console_errors if "Content Security Policy" in text]
    assert violations == [], f"Content-Security-Policy violations: {violations}"


def shot(page, name, full_page=True):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def mark_document(page):
    """A flag that survives HTMX swaps but not a full page load."""
    page.evaluate("window.__noReload = true")


def still_same_document(page) -> bool:
    return page.evaluate("window.__noReload === true")


def tab(page, name):
    page.locator("nav.tabs").get_by_role("link", name=name).click()


def send_echo_as_agent(base_url, api_key, sender_id, recipient_id):
    envelope = {
        "message_id": str(uuid.uuid4()),
        "ts": "2030-01-01T00:00:00Z",
        "sender": {"agent_id": sender_id},
        "recipient": {"agent_id": recipient_id},
        "payload": {"from": "a background agent"},
    }
    request = urllib.request.Request(
        f"{base_url}/api/v1/coordination",
        data=json.dumps(envelope).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (the live test server)
        return response.status


def test_staff_daily_path(page, live_server, org, owner, make_agent):
    receiver = make_agent(org, name="receiver", owner=owner).agent

    # Anonymous: sent to the login page and back to where they were going.
    page.goto("/agents/")
    assert re.search(r"/login/\?next=/agents/$", page.url)
    shot(page, "login", full_page=False)
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/agents/")

    # Overview by tab switch: HTMX swaps the content, pushes the URL, no reload.
    mark_document(page)
    tab(page, "Overview")
    page.wait_for_url(f"{live_server.url}/")
    page.get_by_role("heading", name="Echoes by outcome").wait_for()
    assert still_same_document(page)
    assert page.title() == "Overview · Brikk"
    shot(page, "overview")

    # Create an agent: the key and signing secret are shown once.
    tab(page, "Agents")
    page.wait_for_url(f"{live_server.url}/agents/")
    page.get_by_role("link", name="New agent").click()
    page.fill("#id_name", "receiver")  # taken: the form says so and keeps the input
    page.fill("#id_description", "Sends the end-to-end echoes")
    page.get_by_role("button", name="Create agent").click()
    page.get_by_text("An agent with this name already exists").wait_for()
    assert page.input_value("#id_description") == "Sends the end-to-end echoes"
    page.fill("#id_name", "e2e-sender")
    page.get_by_role("button", name="Create agent").click()
    page.get_by_test_id("credentials").wait_for()
    api_key = page.input_value("[data-testid=api-key]")
    signing_secret = page.input_value("[data-testid=signing-secret]")
    assert api_key.startswith("brk_") and signing_secret
    assert page.get_by_text("shown only once").is_visible()
    sender = Agent.objects.get(name="e2e-sender")
    assert keys.verify(api_key).agent_id == str(sender.pk)
    shot(page, "agent-created")
    page.get_by_role("button", name="Copy").first.click()
    page.get_by_role("link", name="I have stored them — continue").click()
    page.wait_for_url(f"{live_server.url}/agents/{sender.pk}/")
    assert api_key not in page.content()
    assert still_same_document(page)

    tab(page, "Agents")
    page.locator('tr[data-agent="e2e-sender"]').wait_for()
    shot(page, "agents")

    # Echo test: client-side validation, then a real echo through the coordination API.
    tab(page, "Echo test")
    page.wait_for_url(f"{live_server.url}/echo/")
    page.select_option("#echo-sender", label="e2e-sender")
    page.select_option("#echo-recipient", label="receiver")
    page.fill("#echo-payload", '{"ping": ')
    page.get_by_test_id("echo-send").click()
    page.get_by_text("The payload is not valid JSON").first.wait_for()
    page.fill("#echo-payload", "[1, 2]")
    page.get_by_test_id("echo-send").click()
    page.get_by_text("The payload must be a JSON object").first.wait_for()
    assert MessageLog.objects.count() == 0  # nothing was sent

    page.fill("#echo-payload", '{"ping": 1, "from": "the dashboard"}')
    page.get_by_test_id("echo-send").click()
    status = page.get_by_test_id("echo-status")
    expect(page.get_by_test_id("echo-status")).to_have_text(re.compile(r"^200"))
    assert status.inner_text().startswith("200")
    assert re.match(r"round trip \d+\.\d ms", page.get_by_test_id("echo-time").inner_text())
    body = json.loads(page.get_by_test_id("echo-body").inner_text())
    assert body["status"] == "delivered" and body["envelope"]["payload"] == {"ping": 1, "from": "the dashboard"}
    assert page.locator("[data-echo-headers]").get_by_text("x-request-id").is_visible()
    message = MessageLog.objects.get()
    assert (message.sender_id, message.recipient_id, message.auth_method) == (sender.pk, receiver.pk, "session")
    shot(page, "echo-test")

    # The server's field errors land next to the field (a sender that is not in the organization).
    page.evaluate("document.querySelector('#echo-sender').options[0].value = '00000000-0000-4000-8000-000000000000'")
    page.select_option("#echo-sender", index=0)
    page.get_by_test_id("echo-send").click()
    expect(page.get_by_test_id("echo-status")).to_have_text(re.compile(r"^403"))
    sender_error = page.locator('[data-error-for="sender"]')
    assert "Not an active agent of your organization." in sender_error.inner_text()

    # Message logs: a new message appears without a reload.
    tab(page, "Message logs")
    page.wait_for_url(f"{live_server.url}/messages/")
    rows = page.locator("[data-testid=message-table] tbody tr")
    rows.first.wait_for()
    before = rows.count()
    assert send_echo_as_agent(live_server.url, api_key, str(sender.pk), str(receiver.pk)) == 200
    expect(rows).to_have_count(before + 1)
    assert still_same_document(page)
    shot(page, "message-logs")
    newest = MessageLog.objects.order_by("-created_at", "-id").first()
    rows.first.get_by_role("link").click()
    page.wait_for_url(f"{live_server.url}/messages/{newest.pk}/")
    page.get_by_role("heading", name="Request body").wait_for()
    assert page.locator("form.filters").count() == 0  # the detail replaced the whole tab, not the live table
    assert "a background agent" in page.content()
    shot(page, "message-detail")

    # Back button: the previous tab comes back.
    page.go_back()
    page.wait_for_url(f"{live_server.url}/messages/")
    rows.first.wait_for()

    tab(page, "Audit")
    page.wait_for_url(f"{live_server.url}/audit/")
    page.get_by_test_id("audit-table").get_by_text("agent.created").first.wait_for()
    page.get_by_test_id("audit-table").locator("details summary").first.click()  # details as indented JSON
    assert page.get_by_test_id("audit-table").locator("details[open] pre").inner_text().startswith("{\n  ")
    shot(page, "audit")

    # Rotate the key with a grace period of our choosing: confirmation, then the new key once.
    page.goto(f"/agents/{sender.pk}/")
    page.get_by_role("link", name="Rotate key").click()
    page.get_by_role("heading", name="Rotate the key of e2e-sender?").wait_for()
    assert page.input_value("#id_grace_seconds") == "3600"  # the configured default is preselected
    page.select_option("#id_grace_seconds", label="5 minutes")
    shot(page, "rotate-key")
    page.get_by_role("button", name="Rotate key").click()
    page.get_by_test_id("credentials").wait_for()
    new_key = page.input_value("[data-testid=api-key]")
    assert new_key.startswith("brk_") and new_key != api_key
    assert keys.verify(new_key).agent_id == str(sender.pk)
    assert page.get_by_text("The previous key keeps working for 5 minutes, then expires.").is_visible()
    assert page.get_by_text("Copy this key now: it is shown only once.").is_visible()
    shot(page, "key-rotated")
    assert keys.verify(api_key).agent_id == str(sender.pk)  # still in its grace period

    # Revoke only the old key, from its row.
    page.get_by_role("link", name="I have stored it — continue").click()
    old_prefix = api_key.split(".")[0].removeprefix("brk_")
    page.locator(f'tr[data-key="{old_prefix}"]').get_by_role("link", name="Revoke").click()
    page.get_by_role("heading", name=f"Revoke key brk_{old_prefix}… of e2e-sender?").wait_for()
    page.get_by_role("button", name="Revoke this key").click()
    page.get_by_text("Revoked 1 key of e2e-sender; it stops working now.").wait_for()
    page.locator(f'tr[data-key="{old_prefix}"]').get_by_text("revoked").wait_for()
    with pytest.raises(keys.KeyRejected):
        keys.verify(api_key)
    assert keys.verify(new_key).agent_id == str(sender.pk)
    shot(page, "agent-detail")

    # Phone width: the table turns into labelled rows.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/agents/")
    page.locator('tr[data-agent="e2e-sender"]').wait_for()
    shot(page, "agents-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Log out.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login/$"))
    page.goto("/")
    assert "/login/" in page.url


def test_member_sees_a_read_only_dashboard_and_live_status(page, live_server, org, member, make_agent):
    agent = make_agent(org, name="watched").agent
    page.goto("/login/")
    page.fill("#id_username", "member")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.goto("/agents/")
    row = page.locator('tr[data-agent="watched"]')
    row.get_by_text("Active").wait_for()
    assert page.get_by_role("link", name="New agent").count() == 0
    assert page.locator("nav.tabs").get_by_role("link", name="Audit").count() == 0
    mark_document(page)
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.MAINTENANCE)
    row.get_by_text("Maintenance").wait_for()  # the live table picks it up without a reload
    assert still_same_document(page)

    # The live table stops polling while the tab is hidden and polls at once when it is visible again.
    def visibility(state):
        page.evaluate(
            f"Object.defineProperty(document, 'visibilityState', {{configurable: true, get: () => '{state}'}});"
            "document.dispatchEvent(new Event('visibilitychange'))"
        )

    polls = []
    page.on("request", lambda request: "/agents/table/" in request.url and polls.append(request.url))
    visibility("hidden")
    page.wait_for_timeout(500)  # a poll already in flight lands
    polls.clear()
    page.wait_for_timeout(2500)  # 2.5 poll periods (BRIKK_DASHBOARD_POLL_SECONDS=1 here)
    assert polls == []
    with page.expect_request(lambda request: "/agents/table/" in request.url, timeout=500):
        visibility("visible")


def test_owner_redrives_dead_letters_and_follows_a_message_through_its_delivery(
    page, live_server, org, owner, make_agent, make_message
):
    from datetime import timedelta

    from django.utils import timezone

    from coordination import inbox
    from coordination.leasing import Consumer
    from tests.support.inbox import queue_messages

    sender, receiver = make_agent(org, name="sender", owner=owner).agent, make_agent(org, name="receiver").agent
    start = timezone.now() - timedelta(minutes=3)
    (waiting,) = queue_messages(sender, receiver, 1, now=start)
    letters = queue_messages(sender, receiver, 3, now=start)
    MessageLog.objects.filter(pk__in=[m.pk for m in letters]).update(
        delivery_state="dead", dead_reason="max_deliveries", dead_at=timezone.now(), delivery_count=10
    )
    reply = make_message(org, receiver, sender, in_reply_to=waiting)

    def lease(name, seconds, at):
        return inbox.receive(
            receiver.pk, org.pk, max_messages=1, lease_seconds=seconds, consumer=Consumer(name=name), now=at
        )

    log_in(page, "owner")
    page.goto("/")
    expect(page.get_by_test_id("inbox-dead")).to_have_text("3")
    page.get_by_role("link", name="See them by agent →").click()
    page.wait_for_url(f"{live_server.url}/agents/")
    row = page.locator('tr[data-agent="receiver"]')
    assert row.get_by_test_id("queued").inner_text() == "1" and row.get_by_test_id("dead").inner_text() == "3"
    row.get_by_role("link", name="receiver").click()
    page.wait_for_url(f"{live_server.url}/agents/{receiver.pk}/")
    mark_document(page)
    inbox_rows = page.locator("[data-testid=inbox-table] tbody tr")
    dead_rows = page.locator("[data-testid=dead-table] tbody tr")
    expect(inbox_rows).to_have_count(1)
    expect(dead_rows).to_have_count(3)

    # One dead letter, by its own button: it moves back to the inbox, and the page says so.
    first = letters[0]
    page.get_by_role("button", name=f"Redrive message {first.pk}").click()
    expect(page.get_by_test_id("redrive-feedback")).to_have_text("Sent 1 dead letter back to the inbox of receiver.")
    page.locator(f'[data-testid=inbox-table] tr[data-message="{first.pk}"]').wait_for()
    expect(dead_rows).to_have_count(2)
    assert MessageLog.objects.get(pk=first.pk).delivery_state == "queued"
    shot(page, "agent-inbox")

    # The rest, all at once; the feedback outlives the panel's next polls.
    page.get_by_test_id("redrive-all").click()
    expect(page.get_by_test_id("redrive-feedback")).to_have_text("Sent 2 dead letters back to the inbox of receiver.")
    expect(inbox_rows).to_have_count(4)
    page.get_by_text("No dead letters.").wait_for()
    assert set(MessageLog.objects.filter(pk__in=[m.pk for m in letters]).values_list("delivery_state", flat=True)) == {
        "queued"
    }
    with page.expect_response(lambda response: f"/agents/{receiver.pk}/inbox/" in response.url):
        pass  # a poll lands
    assert page.get_by_test_id("redrive-feedback").is_visible()
    assert still_same_document(page)

    # A message's delivery, live while it waits: a lease that runs out, then one that is acked.
    page.locator(f'[data-testid=inbox-table] tr[data-message="{waiting.pk}"]').get_by_role("link").click()
    page.wait_for_url(f"{live_server.url}/messages/{waiting.pk}/")
    timeline = page.get_by_test_id("delivery-timeline")
    timeline.locator('[data-event="accepted"]').wait_for()
    expect(timeline.locator('[data-event="lease"]')).to_have_count(0)
    lease("10.0.0.7 worker-a", 1, timezone.now() - timedelta(seconds=5))
    timeline.get_by_text("lease ran out: no ack in time").wait_for()  # without a reload
    (item,) = lease("10.0.0.8 worker-b", 60, timezone.now())
    timeline.get_by_text("10.0.0.8 worker-b").wait_for()
    inbox.ack(receiver.pk, [item["receipt"]])
    expect(page.get_by_test_id("delivery-state")).to_have_text("Acked")
    expect(timeline.get_by_test_id("lease-outcome").nth(1)).to_contain_text("acked")
    shot(page, "message-timeline")

    # Its reply, and back to the original from the reply.
    page.get_by_test_id("replies").get_by_role("link").click()
    page.wait_for_url(f"{live_server.url}/messages/{reply.pk}/")
    page.get_by_test_id("in-reply-to").get_by_role("link").click()
    page.wait_for_url(f"{live_server.url}/messages/{waiting.pk}/")
    page.get_by_test_id("delivery-timeline").wait_for()

    # At phone width the inbox, the dead letters and the timeline stay on the page.
    MessageLog.objects.filter(pk=letters[0].pk).update(delivery_state="dead", dead_reason="expired")
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (f"/agents/{receiver.pk}/", f"/messages/{waiting.pk}/"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert overflow(page) == 0, f"{path} runs off the page at 390 px"


# --- Issue 9: what a new user tripped on ---------------------------------------------------------------


def log_in(page, username):
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/login/).*$"))


def overflow(page) -> int:
    """How far the page is wider than the window (0: nothing runs off to the side)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_every_filter_form_submitted_with_its_defaults_shows_every_row(
    page, live_server, org, owner, make_agent, make_message
):
    sender, receiver = make_agent(org, name="sender").agent, make_agent(org, name="receiver").agent
    for status in ("delivered", "failed", "rejected"):
        make_message(org, sender, receiver, status=status)
    log_in(page, "owner")
    forms = {"/messages/": "[data-testid=message-table] tbody tr", "/audit/": "[data-testid=audit-table] tbody tr"}
    for path, rows in forms.items():
        page.goto(path)
        before = page.locator(rows).count()
        assert before > 0
        for form in range(page.locator("form.filters").count()):
            page.locator("form.filters").nth(form).get_by_role("button", name="Filter").click()
            page.wait_for_url(re.compile(re.escape(path) + r"\?"))
            page.locator(rows).first.wait_for()
            assert page.locator(".alert-danger").count() == 0, f"{path}: {page.locator('.alert-danger').inner_text()}"
            assert page.get_by_text("Select a valid choice").count() == 0
            assert page.locator(rows).count() == before, path
    # A real choice still filters.
    page.goto("/messages/")
    page.select_option("#f-status", "failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=failed"))
    page.wait_for_function("() => document.querySelectorAll('[data-testid=message-table] tbody tr').length === 1")


def test_echo_clears_the_previous_answer_before_each_send(page, live_server, org, owner, make_agent):
    make_agent(org, name="one")
    make_agent(org, name="two")
    log_in(page, "owner")
    page.goto("/echo/")
    status = page.get_by_test_id("echo-status")
    page.get_by_test_id("echo-send").click()
    page.wait_for_function("() => document.querySelector('[data-testid=echo-status]').textContent.startsWith('200')")
    assert status.is_visible()
    for bad in ('{"ping": ', "[1, 2]", "  "):
        page.fill("#echo-payload", bad)
        page.get_by_test_id("echo-send").click()
        page.locator('[data-error-for="payload"]').wait_for()
        assert not status.is_visible(), f"the previous 200 is still shown after {bad!r}"
        assert not page.get_by_text("Open in message logs").is_visible()
        assert page.get_by_test_id("echo-note").inner_text() == "Not sent: correct the payload, then send again."
    assert MessageLog.objects.count() == 1
    page.fill("#echo-payload", '{"ping": 2}')
    page.get_by_test_id("echo-send").click()
    page.wait_for_function("() => document.querySelector('[data-testid=echo-status]').textContent.startsWith('200')")
    assert MessageLog.objects.count() == 2


def test_the_403_page_keeps_the_header_and_the_tabs(page, live_server, org, member):
    log_in(page, "member")
    response = page.goto("/audit/")
    assert response.status == 403
    page.get_by_role("heading", name="Not allowed").wait_for()
    assert page.locator("header.topbar").is_visible()
    assert page.get_by_role("button", name="Log out").is_visible()
    tabs = page.locator("nav.tabs")
    assert tabs.is_visible() and tabs.get_by_role("link", name="Agents").is_visible()
    tabs.get_by_role("link", name="Message logs").click()  # the way on is right there
    page.wait_for_url(f"{live_server.url}/messages/")
    page.get_by_role("heading", name="Message logs").wait_for()


def test_message_rows_show_distinguishing_ids_and_open_on_click(
    page, live_server, org, owner, make_agent, make_message
):
    sender, receiver = make_agent(org, name="sender").agent, make_agent(org, name="receiver").agent
    made = [make_message(org, sender, receiver, type=kind) for kind in ("message", "event", "command")]
    log_in(page, "owner")
    page.goto("/messages/")
    rows = page.locator("[data-testid=message-table] tbody tr")
    rows.first.wait_for()
    shown = [rows.nth(i).locator(".message-id").inner_text() for i in range(rows.count())]
    assert sorted(shown) == sorted(str(message.pk) for message in made)  # whole ids, each one different
    assert len(set(shown)) == 3
    # A click anywhere on a row (here on its type) opens the message.
    event = next(message for message in made if message.type == "event")
    rows.filter(has_text="event").get_by_text("event", exact=True).click()
    page.wait_for_url(f"{live_server.url}/messages/{event.pk}/")
    page.get_by_role("heading", name="Request body").wait_for()
    assert page.get_by_test_id("message-id").inner_text() == str(event.pk)
    # Selecting text in a row (to copy it) does not open it.
    page.go_back()
    rows.first.wait_for()
    box = rows.first.get_by_text("sender → receiver").bounding_box()
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    assert page.evaluate("String(window.getSelection())").strip()
    page.wait_for_timeout(300)
    assert page.url == f"{live_server.url}/messages/"


@pytest.mark.parametrize("organizations", [1, 2])
def test_phone_width_short_header_and_tabs_that_show_they_scroll(
    page, live_server, org, owner, make_org, organizations
):
    org.name = "Acme Robotics"
    org.save()
    if organizations == 2:  # the top bar then has the organization switcher
        services.add_member(make_org("Globex Corporation"), owner, Membership.Role.ADMIN)
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, "owner")
    page.goto("/")
    header = page.locator("header.topbar").bounding_box()
    assert header["height"] <= 60, f"the header takes {header['height']} px"
    assert page.get_by_role("button", name="Log out").is_visible()
    if organizations == 2:
        assert page.locator("#org-select").is_visible()
    bar = page.locator("[data-tabs-bar]")
    tabs = page.locator("nav.tabs")
    assert tabs.bounding_box()["y"] < 60
    assert page.evaluate(
        "(() => { const n = document.querySelector('nav.tabs'); return n.scrollWidth > n.clientWidth })()"
    )
    assert bar.count() == 1, "no scroll hint around the tabs"
    hint = "(side) => getComputedStyle(document.querySelector('[data-tabs-bar]'), side).opacity"
    # The hint's opacity on each side, [before, after] (a function with an argument: no eval under the CSP).
    shows = "([before, after]) => { const bar = document.querySelector('[data-tabs-bar]');"
    shows += " const o = (side) => getComputedStyle(bar, side).opacity;"
    shows += " return (before === null || o('::before') === before) && o('::after') === after; }"
    page.wait_for_function(shows, arg=[None, "1"])  # more tabs to the right
    assert page.evaluate(hint, "::before") == "0"
    if organizations == 1:
        shot(page, "overview-phone", full_page=False)
    tabs.evaluate("(nav) => nav.scrollTo({left: nav.scrollWidth})")
    page.wait_for_function(shows, arg=["1", "0"])
    assert bar.get_attribute("data-more-left") is not None
    # The current tab is scrolled into view, even the last one.
    page.goto("/audit/")
    current = tabs.locator('[aria-current="page"]')
    box, nav = current.bounding_box(), tabs.bounding_box()
    assert box["x"] >= nav["x"] and box["x"] + box["width"] <= nav["x"] + nav["width"] + 1
    assert overflow(page) == 0
    # Wide enough for every tab: no hint.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_function(shows, arg=["0", "0"])


LONG_NAME = "x" * 120


@pytest.mark.parametrize("width", [1280, 390])
def test_long_names_wrap_and_the_agents_table_keeps_its_key_columns(page, live_server, org, owner, make_agent, width):
    long = make_agent(org, name=LONG_NAME, owner=owner, description="d" * 300).agent
    make_agent(org, name="Quite-a-long-name-with-dashes-that-never-breaks-on-its-own-" + "y" * 60, owner=owner)
    org.name = "Acme Robotics International Holdings " + "z" * 80
    org.save()
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, "owner")
    page.goto("/agents/")
    page.locator(f'tr[data-agent="{LONG_NAME}"]').wait_for()
    assert overflow(page) == 0
    if width > 640:  # a real table: every column stays inside it, none is pushed off to scroll
        wrap = page.locator("#agent-table .table-wrap")
        assert wrap.evaluate("(el) => el.scrollWidth <= el.clientWidth")
        right = wrap.bounding_box()["x"] + wrap.bounding_box()["width"]
        for column in ("Key", "Key issued", "Key expires"):
            box = page.get_by_role("columnheader", name=column, exact=True).bounding_box()
            assert box["x"] + box["width"] <= right + 1, f"{column} is cut off"
        shot(page, "agents-long-names")
    for path in (
        f"/agents/{long.pk}/",
        f"/agents/{long.pk}/edit/",
        f"/agents/{long.pk}/rotate-key/",
        f"/agents/{long.pk}/revoke-keys/",
        f"/agents/{long.pk}/delete/",
        "/echo/",
        "/messages/",
        "/",
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert overflow(page) == 0, f"{path} runs off the page at {width} px"


def test_admin_and_api_docs_work_offline_under_the_content_security_policy(page, live_server, make_user):
    """Swagger UI comes from drf-spectacular-sidecar's static files: nothing is fetched from another host."""
    foreign = []

    def only_this_server(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    response = page.goto("/api/docs/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.locator(".swagger-ui .opblock-tag").first.wait_for()
    page.get_by_text("/api/v1/coordination", exact=True).first.wait_for()
    assert page.title() == "Brikk API"

    admin = make_user("root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.get_by_role("link", name="Audit logs").click()
    page.locator("#changelist").wait_for()
    assert foreign == []


# --- Issue 11: push endpoints ---------------------------------------------------------------------------------


def test_owner_manages_a_push_endpoint_and_resends_a_message(
    page, live_server, settings, org, owner, make_agent, make_message
):
    from django.utils import timezone

    from coordination import push_endpoints
    from coordination.models import DeliveryAttempt, PushEndpoint

    settings.BRIKK_WEBHOOK_ALLOW_HTTP = True
    settings.BRIKK_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    server_errors = []
    page.on("response", lambda response: response.status >= 500 and server_errors.append(response.url))
    agent = make_agent(org, name="hooked", owner=owner).agent

    log_in(page, "owner")
    page.goto(f"/agents/{agent.pk}/")
    page.get_by_text("No push endpoint").wait_for()
    page.get_by_test_id("endpoint-add").click()
    page.wait_for_url(f"{live_server.url}/agents/{agent.pk}/endpoints/new/")
    page.fill("#id_url", "http://10.0.0.1/hook")  # inside: refused, the form kept
    page.get_by_role("button", name="Add push endpoint").click()
    page.get_by_text("10.0.0.1 is a private address").wait_for()
    page.fill("#id_url", "http://127.0.0.1:9/brikk")
    page.fill("#id_description", "the receiver")
    page.get_by_role("button", name="Add push endpoint").click()
    secret_field = page.get_by_test_id("endpoint-secret")
    secret_field.wait_for()
    first_secret = secret_field.input_value()
    assert first_secret.startswith("whsec_")
    endpoint = PushEndpoint.objects.get(agent=agent)
    assert push_endpoints.signing_secrets(endpoint) == [first_secret]
    page.get_by_role("link", name="I have stored it — continue").click()
    page.wait_for_url(f"{live_server.url}/agents/{agent.pk}/")
    expect(page.get_by_test_id("endpoint-state")).to_have_text("enabled")
    assert first_secret not in page.content()

    page.get_by_test_id("endpoint-rotate").click()
    page.get_by_role("button", name="Rotate secret").click()
    secret_field.wait_for()
    second_secret = secret_field.input_value()
    assert second_secret.startswith("whsec_") and second_secret != first_secret
    endpoint.refresh_from_db()
    assert push_endpoints.signing_secrets(endpoint) == [second_secret, first_secret]  # both sign during the grace
    page.get_by_role("link", name="I have stored it — continue").click()
    page.wait_for_url(f"{live_server.url}/agents/{agent.pk}/")

    page.get_by_test_id("endpoint-disable").click()
    expect(page.get_by_test_id("endpoint-state")).to_have_text("disabled")
    expect(page.get_by_test_id("endpoint-disabled")).to_contain_text("Disabled by a person.")
    page.get_by_test_id("endpoint-enable").click()
    expect(page.get_by_test_id("endpoint-state")).to_have_text("enabled")
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason) == (True, "")
    shot(page, "push-endpoint")

    now = timezone.now()
    message = make_message(org, recipient=agent, delivery_state="dead", dead_reason="push_exhausted", dead_at=now)
    DeliveryAttempt.objects.create(
        message=message,
        kind="push",
        started_at=now,
        endpoint=endpoint,
        status_code=500,
        latency_ms=8.2,
        error="HTTP 500",
        response_excerpt="<b>broken</b>",
        outcome="failed",
    )
    page.goto(f"/messages/{message.pk}/")
    expect(page.get_by_test_id("push-attempt")).to_contain_text("HTTP 500")
    expect(page.get_by_test_id("push-response")).to_have_text("<b>broken</b>")  # shown as text, not markup
    page.get_by_test_id("message-resend").click()
    expect(page.get_by_test_id("delivery-state")).to_have_text("Queued")
    page.get_by_text("Sent the message again").wait_for()
    message.refresh_from_db()
    assert (message.delivery_state, message.delivery_count) == ("queued", 0)
    assert server_errors == []
