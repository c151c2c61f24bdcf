"""Staff journeys in Chromium: support sees only the items a case names, trust & safety sends a notice the
owner reads with its deadline and answers, an admin searches the audit log."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.conftest import pet_photos
from tests.e2e.conftest import DESKTOP, Server, address, shoot, sign_in, sign_up

WAIT = 240_000


def owner_with_a_portrait(page: Page, server: Server, email: str) -> str:
    """Sign up, add a pet with two photos, train, render one portrait; returns the portrait's id."""
    sign_up(page, server, email)
    page.get_by_label("Name").fill("Pepper")
    page.get_by_role("button", name="Add pet").click()
    page.locator("#files").set_input_files([str(p) for p in pet_photos("cat")[:2]])
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#upload-results")).to_contain_text("2 stored", timeout=60_000)
    page.get_by_role("button", name="Train Pepper's model").click()
    expect(page.get_by_text("Pepper's model is ready.")).to_be_visible(timeout=WAIT)
    page.get_by_role("link", name="Choose styles and make portraits").click()
    page.get_by_label("Pencil sketch").check()
    page.get_by_role("button", name="Make portraits").click()
    expect(page.locator("#gallery li.portrait img")).to_have_count(1, timeout=WAIT)
    return str(page.locator("#gallery li.portrait").first.get_attribute("id")).removeprefix("render-")


def test_staff_journeys(page: Page, server: Server, browser: Browser) -> None:
    render_id = owner_with_a_portrait(page, server, address("pepper"))
    page.get_by_role("link", name=re.compile("^Licence")).click()
    licence_id = page.locator("dd code").first.inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", licence_id)

    # The owner opens a support case naming the portrait (over the API, with the session's CSRF token).
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    opened = page.request.post(
        server.url("/api/v1/me/support-cases"),
        data={"subject": "The portrait looks odd", "items": [{"kind": "render", "id": render_id}], "days": 3},
        headers={"X-CSRF-Token": token},
    )
    assert opened.status == 201, opened.text()
    forged = page.request.post(
        server.url("/api/v1/me/support-cases"),
        data={"subject": "no token", "items": [{"kind": "render", "id": render_id}]},
    )
    assert forged.status == 403 and forged.json()["code"] == "csrf_failed"

    for email, role in [
        (address("support"), "support"),
        (address("safety"), "trust_safety"),
        (address("admin"), "admin"),
    ]:
        server.create_user(email, role)
    staff = browser.new_context(viewport=DESKTOP)
    desk = staff.new_page()

    # Support: the open case and its one item, and nothing else.
    sign_in(desk, server, address("support"))
    expect(desk.get_by_role("heading", name="Support cases")).to_be_visible()
    expect(desk.locator("article")).to_contain_text("The portrait looks odd")
    content = desk.request.get(server.url(f"/api/v1/staff/items/render/{render_id}/content"))
    assert content.status == 200 and content.body()[:4] == b"\x89PNG"
    assert desk.request.get(server.url("/staff/safety")).status == 404
    shoot(desk, "15-staff-support")
    desk.get_by_role("button", name="Sign out").click()

    # Trust & safety: a case on the licence, then the written notice with how to fix it.
    sign_in(desk, server, address("safety"))
    expect(desk.get_by_role("heading", name="Trust & safety")).to_be_visible()
    desk.get_by_label("Licence id of the portrait").fill(licence_id)
    desk.get_by_label("Rule of the content policy").select_option("C5")
    desk.get_by_label("Facts").fill("The portrait is shown as a photo of a real event.")
    desk.get_by_role("button", name="Open case").click()
    expect(desk.get_by_role("status")).to_have_text("The case is open. Send the written notice next.")
    desk.get_by_label("Send the written notice: how to fix it").fill(
        "Add the caption 'AI portrait' where you show it."
    )
    desk.get_by_role("button", name="Send notice").click()
    expect(desk.locator("article").first).to_contain_text("notice sent, cure period running")
    expect(desk.locator("article").first).to_contain_text("cure deadline")
    shoot(desk, "16-staff-safety")
    desk.get_by_role("button", name="Sign out").click()

    # The owner reads the notice: the rule, the deadline, how to fix it, and answers.
    page.get_by_role("link", name="Notices").click()
    notice = page.locator("article.notice")
    expect(notice).to_contain_text("Notice: please fix a portrait")
    expect(notice).to_contain_text("Add the caption 'AI portrait' where you show it.")
    expect(notice.locator(".deadline")).to_contain_text("in 14 days")
    expect(notice).to_contain_text("No deception")
    notice.get_by_label("Reply: what you changed, or why the notice is wrong").fill(
        "Caption added everywhere."
    )
    notice.get_by_role("button", name="Send reply").click()
    expect(page.get_by_role("status")).to_contain_text("Your reply was sent")
    shoot(page, "17-notices", phone=True)
    # Rights stay in force during the cure period: the download still works.
    page.goto(server.url("/portraits"))
    with page.expect_download() as info:
        page.locator("#gallery li.portrait").first.get_by_role("link", name=re.compile("^Download")).click()
    assert info.value.path().read_bytes()[:4] == b"\x89PNG"

    # Admin: the audit log, searched and verified.
    sign_in(desk, server, address("admin"))
    expect(desk.get_by_role("heading", name="Audit log")).to_be_visible()
    desk.get_by_label("Action starts with").fill("support")
    desk.get_by_role("button", name="Search and verify the chain").click()
    expect(desk.get_by_role("status")).to_contain_text("The chain is intact")
    expect(desk.locator("table")).to_contain_text("support_case.opened")
    shoot(desk, "18-staff-audit")
    assert desk.request.get(server.url("/staff/marketing")).status == 404
    staff.close()
