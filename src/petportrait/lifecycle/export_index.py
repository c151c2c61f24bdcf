"""The readable index of an export: `index.html` (open it in a browser after unzipping) and `index.csv`
(open it in a spreadsheet), naming each photo, model and portrait with its pet, its file and its dates.

Built from the same sections as the JSON files, so it says nothing they do not.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

COLUMNS = ("kind", "pet", "name", "file", "made", "deleted_on", "notes")


def _day(value: Any) -> str:
    return str(value)[:10] if value else ""


def index_rows(sections: dict[str, Any]) -> list[dict[str, str]]:
    """One row per photo, model and portrait, in the order of the export."""
    pets = {p["id"]: p["name"] for p in sections.get("pets", [])}
    rows: list[dict[str, str]] = []
    for photo in sections.get("photos", []):
        rows.append(
            {
                "kind": "photo",
                "pet": pets.get(photo["pet_id"], ""),
                "name": photo.get("original_filename") or "",
                "file": photo.get("file") or "",
                "made": _day(photo.get("uploaded_at")),
                "deleted_on": _day(photo.get("expires_at")),
                "notes": f"{photo.get('width')}x{photo.get('height')} pixels",
            }
        )
    for model in sections.get("models", []):
        rows.append(
            {
                "kind": "model",
                "pet": pets.get(model["pet_id"], ""),
                "name": "preview model" if model.get("is_preview") else str(model.get("base_model") or ""),
                "file": "",
                "made": _day(model.get("trained_at") or model.get("created_at")),
                "deleted_on": _day(model.get("expires_at")),
                "notes": f"{model.get('state')}; its weights are not part of the export",
            }
        )
    for render in sections.get("renders", []):
        style = str(render.get("style") or "own description").replace("_", " ")
        notes = [f"seed {render.get('seed')}"]
        if render.get("is_preview"):
            notes.append("preview model (a test pattern)")
        if render.get("withheld"):
            notes.append("image withheld: licence revoked")
        rows.append(
            {
                "kind": "portrait",
                "pet": pets.get(render["pet_id"], ""),
                "name": style + (f": {render['prompt']}" if render.get("prompt") else ""),
                "file": render.get("file") or "",
                "made": _day(render.get("rendered_at") or render.get("created_at")),
                "deleted_on": _day(render.get("expires_at")),
                "notes": "; ".join(notes),
            }
        )
    return rows


def index_csv(rows: list[dict[str, str]]) -> bytes:
    """The rows as CSV (UTF-8 with a byte-order mark, so spreadsheets read the accents)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        # a cell that a spreadsheet would take for a formula is written as text
        writer.writerow({k: ("'" + v if v[:1] in ("=", "+", "-", "@") else v) for k, v in row.items()})
    return ("\ufeff" + out.getvalue()).encode()


def index_html(rows: list[dict[str, str]], *, account_email: str, exported_at: str) -> bytes:
    """The rows as a page, with the images shown from their files beside it."""
    e = escape
    body = []
    for kind, heading in (("photo", "Photos"), ("model", "Models"), ("portrait", "Portraits")):
        mine = [r for r in rows if r["kind"] == kind]
        body.append(f"<h2>{heading} ({len(mine)})</h2>")
        if not mine:
            body.append("<p>None.</p>")
            continue
        body.append(
            "<table><thead><tr><th>Image</th><th>Pet</th><th>What</th><th>Made</th><th>Deleted on</th>"
            "<th>Notes</th></tr></thead><tbody>"
        )
        for r in mine:
            image = (
                f'<a href="{e(r["file"])}"><img src="{e(r["file"])}" alt="{e(r["name"])}" width="96"></a>'
                if r["file"]
                else ""
            )
            body.append(
                f"<tr><td>{image}</td><td>{e(r['pet'])}</td><td>{e(r['name'])}</td><td>{e(r['made'])}</td>"
                f"<td>{e(r['deleted_on'])}</td><td>{e(r['notes'])}</td></tr>"
            )
        body.append("</tbody></table>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Your petportrait data</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2328}}
table{{border-collapse:collapse}}
th,td{{border-bottom:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}</style></head>
<body><main><h1>Your petportrait data</h1>
<p>Everything petportrait held for {e(account_email)} on {e(exported_at[:10])}. The images are in the folders
beside this file; the JSON files hold every detail (manifest.json lists each file with its checksum).</p>
{"".join(body)}
</main></body></html>
"""
    return page.encode()
