"""The content policy (versioned text with numbered clauses), the licence terms, and prompt screening.

Prompt screening refuses a prompt that contains a configured refused term (whole words, case and
accents folded); a classifier is another prompt screen in the registry (`classifier_screen`), asked after it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from petportrait.errors import ProblemError
from petportrait.settings import Settings

POLICY_VERSION = "2026-11-30"


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    text: str


CLAUSES: tuple[Clause, ...] = (
    Clause("C1", "Your own pet", "Upload photos only of animals you may photograph and share."),
    Clause(
        "C2",
        "No sexual content",
        "No sexual or sexualised imagery, and no nudity of people in prompts or images.",
    ),
    Clause("C3", "No gore or cruelty", "No gore, animal cruelty or depictions of abuse."),
    Clause(
        "C4",
        "No hate",
        "No hate symbols, slurs, or imagery that attacks people for who they are.",
    ),
    Clause(
        "C5",
        "No deception",
        "Do not present a portrait as a photograph of a real event, or strip or forge its provenance.",
    ),
    Clause(
        "C6",
        "Others' rights",
        "Do not use portraits to infringe trademarks or other people's rights, or to harass anyone.",
    ),
    Clause(
        "C7",
        "Clearly illegal or abusive content",
        "Content that is clearly illegal or abusive is removed at once, without a cure period.",
    ),
)


def cure_text(cure_days: float) -> str:
    """How cure and appeal work, with the cure period this server is configured with."""
    days = f"{cure_days:g} day" + ("" if f"{cure_days:g}" == "1" else "s")
    return (
        "Before a portrait's licence is lost for breaking a clause, you get a written notice with the facts, "
        f"the clause, the consequence, a deadline ({days} unless the notice says otherwise) and how to fix "
        "it. Your rights stay in force until the deadline; fixed in time, they stay. Only content that is "
        "clearly illegal or abusive loses its licence at once, with notice. You may appeal any decision."
    )


LICENCE_TERMS_VERSION = "2026-12-06"
LICENCE_TERMS = {
    "grant": (
        "petportrait owns this generated image and grants its holder the exclusive right to reproduce and "
        "display it."
    ),
    "no_resale": "petportrait will not sell, license or transfer this image to anyone else.",
    "no_assertion": (
        "petportrait will not assert its copyright in this image against the holder, nor against the people "
        "the holder shows or gives it to."
    ),
    "your_photos": "The holder keeps full ownership of the photos they uploaded; petportrait claims none.",
    "similar_images": (
        "Similar images may be made by others from similar photos; this licence covers this image, not the "
        "look of a pet or a style."
    ),
    "loss": "The licence is lost only as the content policy says: after notice and a chance to fix it, "
    "unless the content is clearly illegal or abusive.",
}


def clause(clause_id: str) -> Clause | None:
    """The clause with this id, or None."""
    return next((c for c in CLAUSES if c.id == clause_id), None)


def as_document(settings: Settings) -> dict[str, object]:
    """The content policy as JSON-ready data (the cure period as configured)."""
    return {
        "version": POLICY_VERSION,
        "clauses": [{"id": c.id, "title": c.title, "text": c.text} for c in CLAUSES],
        "cure_and_appeal": cure_text(settings.rights.cure_days),
        "cure_days": settings.rights.cure_days,
        "licence_terms": {"version": LICENCE_TERMS_VERSION, **LICENCE_TERMS},
    }


class PromptRefused(ProblemError):
    status = 422
    code = "prompt_refused"
    title = "Prompt refused"


# A classifier returns None to pass a prompt, or the reason it refuses it.
Classifier = Callable[[str], str | None]


def classifier_screen(name: str, classify: Classifier) -> Callable[[str, Settings], None]:
    """A prompt screen (for `registry.add_prompt_screen`, e.g. through `build_registry(screens=...)`) that
    refuses a prompt the classifier refuses, naming the classifier."""

    def screen(prompt: str, settings: Settings) -> None:
        _ = settings
        reason = classify(prompt) if prompt else None
        if reason:
            raise PromptRefused(
                f"This prompt was refused: {reason}",
                policy_version=POLICY_VERSION,
                policy_url="/api/v1/content-policy",
                classifier=name,
            )

    return screen


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def screen_prompt(prompt: str | None, settings: Settings) -> None:
    """Refuse (422 `prompt_refused`) a prompt with a refused term or one a classifier refuses."""
    if not prompt:
        return
    folded = _fold(prompt)
    words = " ".join(re.findall(r"[\w]+", folded))
    for term in settings.rights.refused_terms:
        needle = " ".join(re.findall(r"[\w]+", _fold(term)))
        if needle and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", words):
            raise PromptRefused(
                "This prompt asks for something the content policy does not allow; change it and try again.",
                policy_version=POLICY_VERSION,
                policy_url="/api/v1/content-policy",
            )
