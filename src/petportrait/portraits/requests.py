"""What a render request may ask for: one object, one set of limits, for the API, the pages and the CLI.

`RenderRequest.checked(settings, screens)` returns the request with its text trimmed, or raises a
problem with a stable code and a sentence; `portraits.service.request_render` calls it, so every door
gets the same answer. The engine's own bounds (`ml.render`) are the upper limits here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from petportrait.errors import InvalidInput, ProblemError
from petportrait.ml.render import MAX_COUNT, MAX_GUIDANCE, MAX_SIDE, MAX_STEPS, MIN_SIDE

__all__ = [
    "MAX_GUIDANCE",
    "MAX_IMAGES",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_STEPS",
    "MIN_SIDE",
    "RenderRequest",
]
from petportrait.ml.styles import UnknownStyle, get_style
from petportrait.settings import Settings

MAX_PROMPT_CHARS = 500
MAX_IMAGES = MAX_COUNT
MAX_SEED = 2**31 - 1
MAX_STYLE_CHARS = 64


@dataclass(frozen=True)
class RenderRequest:
    """Portraits to render from a model: a style preset or a prompt, how many, and optional knobs."""

    style: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    count: int = 1
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None

    def trimmed(self) -> RenderRequest:
        """This request with its text trimmed (empty text counts as none)."""
        return replace(
            self,
            style=(self.style or "").strip() or None,
            prompt=(self.prompt or "").strip() or None,
            negative_prompt=(self.negative_prompt or "").strip() or None,
        )

    def problems(
        self, settings: Settings, screens: Iterable[Callable[[str, Settings], None]] = ()
    ) -> list[ProblemError]:
        """Everything wrong with this request, each a 422 problem with a stable code (none: it may run)."""
        req = self.trimmed()
        found: list[ProblemError] = []
        if req.style is not None:
            if len(req.style) > MAX_STYLE_CHARS:
                found.append(InvalidInput("That style does not exist.", code="unknown_style"))
            else:
                try:
                    get_style(req.style)
                except UnknownStyle as exc:
                    found.append(InvalidInput(str(exc), code="unknown_style"))
        if req.style is None and req.prompt is None:
            found.append(
                InvalidInput(
                    "Choose a style preset or describe the portrait in a prompt.", code="style_or_prompt"
                )
            )
        for name, text in (("prompt", req.prompt), ("negative_prompt", req.negative_prompt)):
            if text is not None and len(text) > MAX_PROMPT_CHARS:
                found.append(
                    InvalidInput(
                        f"The {name.replace('_', ' ')} has {len(text)} characters; "
                        f"at most {MAX_PROMPT_CHARS} are allowed.",
                        code=f"{name}_too_long",
                    )
                )
        if not 1 <= req.count <= MAX_IMAGES:
            found.append(
                InvalidInput(
                    f"A request renders from 1 to {MAX_IMAGES} portraits; it asked for {req.count}.",
                    code="invalid_count",
                )
            )
        if req.seed is not None and not 0 <= req.seed <= MAX_SEED:
            found.append(
                InvalidInput(f"The seed must be a whole number from 0 to {MAX_SEED}.", code="invalid_seed")
            )
        for name, side in (("width", req.width), ("height", req.height)):
            if side is not None and (side % 8 != 0 or not MIN_SIDE <= side <= MAX_SIDE):
                found.append(
                    InvalidInput(
                        f"The {name} must be a multiple of 8 from {MIN_SIDE} to {MAX_SIDE} pixels; "
                        f"it was {side}.",
                        code="invalid_size",
                    )
                )
        if req.steps is not None and not 1 <= req.steps <= MAX_STEPS:
            found.append(
                InvalidInput(
                    f"Steps must be from 1 to {MAX_STEPS}; it was {req.steps}.", code="invalid_steps"
                )
            )
        if req.guidance is not None and not (
            math.isfinite(req.guidance) and 0 <= req.guidance <= MAX_GUIDANCE
        ):
            found.append(
                InvalidInput(f"Guidance must be from 0 to {MAX_GUIDANCE:g}.", code="invalid_guidance")
            )
        if found:
            return found
        for screen in screens:
            for text in (req.prompt, req.negative_prompt):
                if text is None:
                    continue
                try:
                    screen(text, settings)
                except ProblemError as refused:
                    return [refused]
        return []

    def checked(
        self, settings: Settings, screens: Iterable[Callable[[str, Settings], None]] = ()
    ) -> RenderRequest:
        """This request, trimmed and checked; raises the first problem (422 with a stable code)."""
        found = self.problems(settings, screens)
        if found:
            raise found[0]
        return self.trimmed()
