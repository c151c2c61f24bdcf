"""The owner's journey in Chromium: sign up, a pet, four photos, training, two styles, download, export,
account deletion; and the messages people see for bad uploads."""

from __future__ import annotations

import io
import re
import zipfile

from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.conftest import pet_photos
from tests.e2e.conftest import (
    DESKTOP,
    PASSWORD,
    Server,
    address,
    drop_files,
    journey_state,
    shoot,
    sign_in,
    sign_up,
)

PROGRESS_SECONDS = 420_000  # the preview model on a shared CPU can be slow


def test_owner_journey(page: Page, server: Server, browser: Browser) -> None:
    page.goto(server.url("/"))
    expect(page.get_by_role("heading", name="Our data policy, in plain words")).to_be_visible()
    expect(page.get_by_text("Your pet photos: kept 30 days")).to_be_visible()
    expect(page.get_by_role("note")).to_contain_text("Preview: images are test patterns, not your pet.")
    journey_state(page, "01-landing")

    email = address("owner")
    sign_up(page, server, email)
    expect(page.get_by_role("heading", name="My pets")).to_be_visible()
    page.get_by_label("Name").fill("Biscuit")
    page.get_by_label("Dog").check()
    journey_state(page, "02-my-pets-empty")
    page.get_by_role("button", name="Add pet").click()
    expect(page.get_by_role("heading", name="Biscuit")).to_be_visible()

    # Four photos, dropped onto the upload area: previews first, then per-file results with deletion dates.
    photos = pet_photos("dog")[:4]
    drop_files(page, "#dropzone", [(p.name, "image/jpeg", p.read_bytes()) for p in photos])
    expect(page.locator("#previews li")).to_have_count(4)
    expect(page.locator("#previews img")).to_have_count(4)
    page.get_by_role("button", name="Upload", exact=True).click()
    results = page.locator("#upload-results")
    expect(results).to_contain_text("Upload results: 4 stored", timeout=60_000)
    expect(results.locator("li.ok")).to_have_count(4)
    expect(results).to_contain_text("it will be deleted on")
    expect(page.locator("#photos li.photo")).to_have_count(4)
    expect(page.locator("#photos li.photo").first).to_contain_text("Deleted on")
    journey_state(page, "03-pet-photos-uploaded")

    # Train with the preview model: a phase in words, then steps; every progress sentence is kept to check
    # that the time left only goes down; photo actions wait; one end state.
    page.get_by_role("button", name="Train Biscuit's model").click()
    bar = page.locator("#train-progress")
    expect(bar).to_be_visible()
    page.evaluate(
        """() => { window.progressTexts = [];
           const text = document.querySelector('[data-progress-text]');
           window.progressTexts.push(text.textContent.trim());
           new MutationObserver(() => window.progressTexts.push(text.textContent.trim()))
             .observe(text, {childList: true, characterData: true, subtree: true}); }"""
    )
    expect(page.get_by_role("button", name="Cancel training")).to_be_visible()
    expect(
        page.get_by_text("You can close this page: we'll email you when the model is ready")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Upload", exact=True)).to_be_disabled()
    expect(page.locator("#photos button").first).to_be_disabled()
    journey_state(page, "04-training-progress")
    expect(page.get_by_text("Biscuit's model is ready.")).to_be_visible(timeout=PROGRESS_SECONDS)
    texts = [t for t in page.evaluate("window.progressTexts") if t]
    assert re.match(r"(Waiting for a free worker|Getting ready)", texts[0]), texts
    assert not any("%" in t for t in texts), texts  # words and steps, not a bare percentage
    minutes = [int(m) for t in texts for m in re.findall(r"about (\d+) minutes? left", t)]
    assert minutes == sorted(minutes, reverse=True), texts  # the estimate never goes up
    expect(page.locator(".progress-box")).to_have_count(0)  # one end state: no bar beside "ready"
    expect(page.get_by_role("button", name="Upload", exact=True)).to_be_enabled()
    expect(page.locator("#photos button").first).to_be_enabled()
    journey_state(page, "05-training-done")

    # Two styles, one portrait each.
    page.get_by_role("link", name="Choose styles and make portraits").click()
    expect(page.get_by_role("heading", name="Choose one or more styles")).to_be_visible()
    expect(page.get_by_label("Pet")).to_have_value(re.compile(r"[0-9a-f]{32}"))
    page.get_by_label("Oil painting").check()
    page.get_by_label("Watercolour").check()
    page.get_by_label("Seed (optional; the same seed gives the same image)").fill("42")
    page.get_by_role("button", name="Make portraits").click()
    page.wait_for_url("**/portraits")
    gallery = page.locator("#gallery li.portrait")
    expect(gallery).to_have_count(2)
    expect(page.locator("#gallery li.portrait img")).to_have_count(2, timeout=PROGRESS_SECONDS)
    expect(gallery.first).to_contain_text(re.compile(r"Deleted in 30 days \(on \d+ \w+ \d{4}\)"))
    expect(gallery.first.locator(".tag")).to_have_text("preview")
    expect(page.locator(".preview-note")).to_contain_text("they are test patterns, not pictures of your pet")
    expect(page.get_by_role("heading", name="Biscuit", exact=True)).to_be_visible()  # grouped by pet
    expect(page.get_by_role("heading", name=re.compile("^Oil painting"))).to_be_visible()  # then by style
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].every(i => i.naturalWidth > 0)"
    )
    journey_state(page, "06-portraits")

    # The viewer: a larger view; arrow keys and a swipe move between portraits, Escape closes.
    gallery.first.locator(".open-viewer").click()
    viewer = page.get_by_role("dialog")
    expect(viewer).to_be_visible()
    expect(viewer.get_by_role("heading")).to_contain_text("(1 of 2)")
    expect(viewer).to_contain_text("Deleted in 30 days")
    expect(viewer).to_contain_text("A preview test pattern")
    expect(viewer.get_by_role("link", name="Licence")).to_have_attribute("href", re.compile("/licence$"))
    journey_state(page, "06b-portrait-viewer")
    page.keyboard.press("ArrowRight")
    expect(viewer.get_by_role("heading")).to_contain_text("(2 of 2)")
    page.evaluate(
        """() => { const d = document.querySelector('dialog.viewer');
           const touch = (x) => [new Touch({identifier: 1, target: d, clientX: x, clientY: 200})];
           d.dispatchEvent(new TouchEvent('touchstart', {changedTouches: touch(300), bubbles: true}));
           d.dispatchEvent(new TouchEvent('touchend', {changedTouches: touch(100), bubbles: true})); }"""
    )
    expect(viewer.get_by_role("heading")).to_contain_text("(1 of 2)")  # a swipe to the left: the next one
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # Download one portrait and check the file.
    with page.expect_download() as info:
        gallery.first.get_by_role("link", name=re.compile("^Download")).click()
    download = info.value
    path = download.path()
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (64, 64)
    assert download.suggested_filename.startswith("portrait-")
    checked = page.request.post(
        server.url("/api/v1/provenance/verify"), data=data, headers={"Content-Type": "image/png"}
    )
    provenance = checked.json()
    assert provenance["ok"] and provenance["state"] == "Trusted", provenance
    assert provenance["licence"], provenance
    render_id = str(gallery.first.get_attribute("id")).removeprefix("render-")

    # The licence page of that portrait.
    gallery.first.get_by_role("link", name=re.compile("^Licence")).click()
    expect(page.get_by_role("heading", name="Licence of this portrait")).to_be_visible()
    expect(page.get_by_text("exclusive right to reproduce and display it")).to_be_visible()
    expect(page.get_by_text("will not assert its copyright in this image against the holder")).to_be_visible()
    journey_state(page, "07-licence")

    # The public page of that licence, as anyone checking it sees it, and a report from a visitor.
    visitor = browser.new_context(viewport=DESKTOP)
    public = visitor.new_page()
    public.goto(server.url(page.locator('a[href^="/licences/"]').get_attribute("href") or ""))
    expect(public.get_by_role("heading", name="Portrait licence")).to_be_visible()
    expect(public.get_by_text("This licence is active.")).to_be_visible()
    expect(public.get_by_text("a written notice and 14 days to fix a problem first")).to_be_visible()
    journey_state(public, "07b-public-licence")
    public.get_by_role("button", name="Send the report").click()
    expect(public.locator("#reason-error")).to_have_text("Choose what is wrong with it.")
    public.get_by_label("What is wrong with it?").select_option("other")
    public.get_by_label("Details (optional)").fill("Checking that reports reach someone")
    public.get_by_role("button", name="Send the report").click()
    expect(public.get_by_role("status")).to_contain_text("your report is received")
    journey_state(public, "07c-public-licence-reported")
    visitor.close()

    # Marketing staff ask to use that portrait; the owner sees the exact item and says yes.
    server.create_user(address("marketing"), "marketing")
    staff = browser.new_context(viewport=DESKTOP)
    desk = staff.new_page()
    sign_in(desk, server, address("marketing"))
    expect(desk.get_by_role("heading", name="Marketing", exact=True)).to_be_visible()
    desk.get_by_label(re.compile("^Items, one per line")).fill(f"portrait {render_id}")
    desk.get_by_label("Purpose").fill("A spring campaign on our home page")
    desk.get_by_label("Our website").check()
    desk.get_by_role("button", name="Send the request").click()
    expect(desk.get_by_role("status")).to_have_text("The request was sent to the person's consent inbox.")
    expect(desk.locator("table")).to_contain_text("pending")

    page.get_by_role("link", name="Consent").click()
    request = page.locator("article.request")
    expect(request).to_contain_text("A spring campaign on our home page")
    expect(request).to_contain_text("our website")
    expect(request.locator("img")).to_have_count(1)
    journey_state(page, "12-consent-request")
    request.get_by_role("button", name=re.compile("^Yes, use this")).click()
    expect(page.get_by_role("status")).to_contain_text("Your consent is recorded")
    consents = page.get_by_role("table")
    expect(consents).to_contain_text("Standing; a copy is in our marketing library")
    page.get_by_role("link", name="Receipt").click()
    expect(page.get_by_role("heading", name="Consent receipt")).to_be_visible()
    page.go_back()
    journey_state(page, "13-consent-granted")

    desk.reload()
    expect(desk.locator("table")).to_contain_text("granted")
    expect(desk.locator(".library img")).to_have_count(1)
    desk.wait_for_function("() => document.querySelector('.library img').naturalWidth > 0")
    shoot(desk, "14-staff-marketing", phone=True)
    staff.close()

    # The styles gallery, with its preview examples (being made since start-up: test_experience checks that).
    page.goto(server.url("/styles"))
    expect(page.locator(".example img").first).to_be_visible(timeout=120_000)
    expect(page.locator(".example .tag").first).to_have_text("preview")
    journey_state(page, "08-styles")

    # My data: everything held, the export, then the account's deletion.
    page.get_by_role("link", name="My data").click()
    expect(page.get_by_role("heading", name="My data", exact=True)).to_be_visible()
    expect(page.locator("table").first).to_contain_text("Photo ")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download my data (ZIP)").click()
    archive = zipfile.ZipFile(info.value.path())
    names = archive.namelist()
    assert sum(1 for n in names if n.lower().endswith((".jpg", ".jpeg"))) == 4, names
    assert sum(1 for n in names if n.lower().endswith(".png")) == 2, names
    assert any("consent" in n for n in names) or any(
        b"consent_receipts" in archive.read(n) for n in names if n.endswith(".json")
    ), names
    rows = archive.read("index.csv").decode("utf-8-sig")
    assert rows.count("\nphoto,Biscuit,") == 4 and rows.count("\nportrait,Biscuit,") == 2, rows
    assert b"Your petportrait data" in archive.read("index.html")
    journey_state(page, "09-my-data")

    # Deleting a portrait asks in the page's own dialog first.
    page.goto(server.url("/portraits"))
    gallery.last.get_by_role("button", name=re.compile("^Delete")).click()
    question = page.get_by_role("dialog")
    expect(question).to_contain_text("Delete this portrait now? This cannot be undone.")
    journey_state(page, "09b-delete-question")
    question.get_by_role("button", name="Keep it").click()
    expect(gallery).to_have_count(2)
    gallery.last.get_by_role("button", name=re.compile("^Delete")).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(gallery).to_have_count(1)
    page.get_by_role("link", name="My data").click()

    page.get_by_label(re.compile("To confirm, type your email address")).fill(address("wrong"))
    page.get_by_label("Your current password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account and all my data").click()
    expect(page.get_by_role("alert")).to_contain_text("type your email address exactly as shown")
    page.get_by_label(re.compile("To confirm, type your email address")).fill(email)
    page.get_by_label("Your current password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account and all my data").click()
    expect(page.get_by_role("heading", name="Your account is deleted")).to_be_visible()
    journey_state(page, "10-account-deleted")
    page.goto(server.url("/pets"))
    expect(page).to_have_url(re.compile(r"/signin\?next=/pets$"))


def test_bad_uploads_show_sentences(page: Page, server: Server) -> None:
    sign_up(page, server, address("careless"))
    page.get_by_label("Name").fill("Mittens")
    page.get_by_label("Cat").check()
    page.get_by_role("button", name="Add pet").click()
    small = io.BytesIO()
    Image.new("RGB", (200, 150), (180, 120, 90)).save(small, format="PNG")
    drop_files(
        page,
        "#dropzone",
        [
            ("shopping-list.txt", "text/plain", b"milk, eggs, cat food"),
            ("tiny.png", "image/png", small.getvalue()),
        ],
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    results = page.locator("#upload-results")
    expect(results).to_contain_text("0 stored, 2 not stored")
    expect(results).to_contain_text(
        "shopping-list.txt: not stored. This file is not a photo (JPEG, PNG or WebP)."
    )
    expect(results).to_contain_text(
        "tiny.png: not stored. This photo is too small: the short side must be at least 256 pixels"
    )
    expect(page.get_by_text("Training needs at least 2 photos; Mittens has 0.")).to_be_visible()
    expect(page.get_by_role("button", name="Train Mittens's model")).to_be_disabled()
    journey_state(page, "11-bad-uploads")

    # The same bad file twice is told its own reason twice (not "already uploaded"), and choosing new files
    # clears what was said about the last ones.
    drop_files(
        page,
        "#dropzone",
        [("list.txt", "text/plain", b"milk, eggs"), ("list-again.txt", "text/plain", b"milk, eggs")],
    )
    expect(results).to_be_empty()
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(results.locator("li.bad")).to_have_count(2)
    expect(results).not_to_contain_text("already uploaded")
    expect(results).to_contain_text("list-again.txt: not stored. This file is not a photo")

    # A form sent without its token (another site, an old tab) reads as a page, not an error dump.
    response = page.request.post(server.url("/pets"), form={"name": "Forged", "species": "dog"})
    assert response.status == 403
    assert "This form has expired" in response.text()
