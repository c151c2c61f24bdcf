"""What a person sees around the journey, in Chromium at a desktop's and a phone's size, each state checked
by axe-core: error pages, the phone menu, the terms, sign-in's warning, and the settings page's forms."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import PASSWORD, PHONE, Server, address, journey_state, sign_up


def test_style_examples_are_made_from_start_up_not_on_first_view(page: Page, server: Server) -> None:
    """No page that starts the examples is visited here: serve started making them when it started."""
    folder = server.data_dir / "style-examples"
    for _ in range(240):
        if folder.is_dir():
            break
        page.wait_for_timeout(500)
    assert folder.is_dir(), "serve did not start making the style examples"
    assert "could not make the style examples" not in server.log_tail()


def test_error_pages_read_as_pages_in_a_browser(page: Page, server: Server) -> None:
    missing = page.goto(server.url("/no-such-page"))
    assert missing is not None and missing.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page).to_have_title("Page not found · petportrait")
    journey_state(page, "30-not-found")
    api = page.request.get(server.url("/no-such-page"), headers={"Accept": "application/json"})
    assert api.status == 404 and api.headers["content-type"] == "application/problem+json"

    sign_up(page, server, address("lost"))
    page.goto(server.url("/pets/" + "0" * 32))
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_attached()
    journey_state(page, "31-not-found-signed-in")

    # A form from an old session: the token no longer matches.
    page.goto(server.url("/pets"))
    page.evaluate(
        "() => document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = '0'.repeat(64))"
    )
    page.get_by_label("Name").fill("Old tab")
    page.get_by_label("Cat").check()
    page.get_by_role("button", name="Add pet").click()
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    journey_state(page, "32-form-expired")


def test_the_phone_menu_reaches_every_page_and_leaves_room_for_content(
    context: BrowserContext, server: Server
) -> None:
    page = context.new_page()
    page.set_viewport_size(PHONE)
    page.goto(server.url("/"))
    for name in ("Terms", "Sign in", "Create an account"):  # three links: no menu button needed
        expect(page.get_by_role("navigation", name="Main").get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_role("button", name="Menu")).to_have_count(0)
    sign_up(page, server, address("phone"))
    header = page.locator(".site-header").bounding_box()
    banner = page.locator(".preview-banner").bounding_box()
    assert header is not None and banner is not None
    assert header["height"] + banner["height"] <= 110, (header, banner)
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("link", name="Settings")).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    for name in ("My pets", "Styles", "Portraits", "Consent", "Notices", "My data", "Settings", "Support"):
        expect(page.get_by_role("navigation", name="Main").get_by_role("link", name=name)).to_be_visible()
    page.screenshot(path=str(_shot("33-phone-menu-open")), full_page=False)
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Settings")).to_be_hidden()  # closed again on the new page
    journey_state(page, "34-settings")

    page.goto(server.url("/terms"))
    expect(page.get_by_text("will not assert its copyright in this image against the holder")).to_be_visible()
    expect(page.get_by_text("(14 days unless the notice says otherwise)")).to_be_visible()
    journey_state(page, "35-terms")


def test_sign_in_warns_before_it_pauses_and_offers_a_reset(page: Page, server: Server) -> None:
    email = address("forgetful")
    sign_up(page, server, email)
    page.get_by_role("button", name="Sign out").click()
    page.goto(server.url("/signin"))
    expect(page.get_by_role("link", name="Forgot your password?")).to_have_attribute(
        "href", "/password-reset"
    )
    for _ in range(3):
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password").fill("not " + PASSWORD)
        page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("You have 2 more tries before sign-in pauses")
    expect(alert.get_by_role("link", name="reset it")).to_have_attribute("href", "/password-reset")
    journey_state(page, "36-signin-warning")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/pets")


def test_the_webhook_form_keeps_the_address_and_says_where_it_is_wrong(
    context: BrowserContext, server: Server
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page = context.new_page()
    sign_up(page, server, address("hooks"))
    page.goto(server.url("/settings"))
    expect(page.get_by_label("A portrait is ready")).to_be_checked()  # events in words
    page.get_by_label("Endpoint URL").fill("ftp://files.example.com/hook")
    page.get_by_role("button", name="Add the endpoint").click()
    url = page.get_by_label("Endpoint URL")
    expect(url).to_have_value("ftp://files.example.com/hook")
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#url-error")).to_be_visible()
    journey_state(page, "37-webhook-error")
    for label in (
        "A pet's model is ready",
        "A pet's model could not be trained",
        "A portrait is ready",
        "A portrait could not be made",
        "A photo, model or portrait was deleted",
        "We ask to use an image in marketing",
        "A content-policy notice was sent to you",
    ):
        page.get_by_label(label).uncheck()
    url.fill(server.url("/hooks-here"))
    page.get_by_role("button", name="Add the endpoint").click()
    expect(page.locator("#events-error")).to_have_text("Choose at least one event to be told about.")
    expect(url).to_have_value(server.url("/hooks-here"))
    page.get_by_label("A portrait is ready").check()
    page.get_by_role("button", name="Add the endpoint").click()
    secret = page.locator("#webhook-secret").inner_text()
    page.get_by_role("button", name="Copy the secret").click()
    expect(page.locator("[data-copied]")).to_have_text(re.compile("Copied|Selected"))
    if page.locator("[data-copied]").inner_text() == "Copied.":
        assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(page.get_by_text("Nothing sent to it yet.")).to_be_visible()
    expect(page.locator("article.endpoint")).to_contain_text("Tells it when: a portrait is ready.")
    journey_state(page, "38-webhook-added")


def _shot(name: str) -> object:
    from tests.e2e.conftest import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
