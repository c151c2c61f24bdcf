"""The settings page through the real app: email preferences and a webhook endpoint's whole life.

(No browser test: /usr/bin/chromium is missing on this machine; the page has no script to exercise.)
"""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from petportrait.web.app import Services
from tests.notifications.receivers import HookReceiver
from tests.web.test_pages import page_sign_up


def test_settings_page_saves_preferences_and_walks_a_webhook(services: Services, client: TestClient) -> None:
    services.settings.webhooks.allow_private_targets = True
    csrf = page_sign_up(client, "page@example.com")
    page = client.get("/settings")
    assert page.status_code == 200 and "<script>" not in page.text and "onclick" not in page.text
    saved = client.post(
        "/settings/email",
        data={"timezone": "Europe/Paris", "reminders": "1", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    page = client.get("/settings")
    assert "<option selected>Europe/Paris</option>" in page.text
    assert 'name="job_messages" value="1">' in page.text  # unticked now
    bad = client.post("/settings/email", data={"timezone": "Nowhere/Here", "csrf_token": csrf})
    assert bad.status_code == 422 and "is not a time zone" in bad.text
    assert client.post("/settings/email", data={"timezone": "UTC"}).status_code == 403  # no CSRF token

    with HookReceiver() as hooks:
        added = client.post(
            "/settings/webhooks",
            data={"url": hooks.url(), "events": ["model.ready", "item.deleted"], "csrf_token": csrf},
        )
        assert added.status_code == 200
        secret = re.search(r'id="webhook-secret"[^>]*>(whsec_[^<]+)<', added.text)
        assert secret is not None
        page = client.get("/settings")
        assert secret.group(1) not in page.text  # shown once
        endpoint_id = re.search(r"/settings/webhooks/([0-9a-f]{32})/test", page.text)
        assert endpoint_id is not None
        tested = client.post(f"/settings/webhooks/{endpoint_id.group(1)}/test", data={"csrf_token": csrf})
        assert tested.status_code == 200 and "Test event" in tested.text  # answered at once
        deadline = time.monotonic() + 20
        while "delivered" not in tested.text and time.monotonic() < deadline:
            time.sleep(0.05)
            tested = client.get("/settings")
        assert "delivered" in tested.text and len(hooks.received) == 1
    deleted = client.post(f"/settings/webhooks/{endpoint_id.group(1)}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 200 and "You have no webhook endpoints." in deleted.text
