"""What a render request may ask for: one object, one set of limits, for the API, the pages and the CLI.

`RenderRequest.checked(settings, screens)` returns the request with its text trimmed, or raises a
problem with a stable code and a sentence; `portraits.service.request_render` calls it, so every door
gets the same answer. The engine's own bounds (`ml.render`) are the upper limits here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from petportrait.errors import InvalidInput
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

    def checked(
        self, settings: Settings, screens: Iterable[Callable[[str, Settings], None]] = ()
    ) -> RenderRequest:
        """This request, trimmed and checked; raises 422 with a stable code on the first problem."""
        style = (self.style or "").strip() or None
        prompt = (self.prompt or "").strip() or None
        negative = (self.negative_prompt or "").strip() or None
        if style is not None:
            if len(style) > MAX_STYLE_CHARS:
                raise InvalidInput("That style does not exist.", code="unknown_style")
            try:
                get_style(style)
            except UnknownStyle as exc:
                raise InvalidInput(str(exc), code="unknown_style") from exc
        if style is None and prompt is None:
            raise InvalidInput(
                "Choose a style preset or describe the portrait in a prompt.", code="style_or_prompt"
            )
        for name, text in (("prompt", prompt), ("negative_prompt", negative)):
            if text is not None and len(text) > MAX_PROMPT_CHARS:
                raise InvalidInput(
                    f"The {name.replace('_', ' ')} has {len(text)} characters; "
                    f"at most {MAX_PROMPT_CHARS} are allowed.",
                    code=f"{name}_too_long",
                )
        if not 1 <= self.count <= MAX_IMAGES:
            raise InvalidInput(
                f"A request renders from 1 to {MAX_IMAGES} portraits; it asked for {self.count}.",
                code="invalid_count",
            )
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise InvalidInput(f"The seed must be a whole number from 0 to {MAX_SEED}.", code="invalid_seed")
        for name, side in (("width", self.width), ("height", self.height)):
            if side is not None and (side % 8 != 0 or not MIN_SIDE <= side <= MAX_SIDE):
                raise InvalidInput(
                    f"The {name} must be a multiple of 8 from {MIN_SIDE} to {MAX_SIDE} pixels; "
                    f"it was {side}.",
                    code="invalid_size",
                )
        if self.steps is not None and not 1 <= self.steps <= MAX_STEPS:
            raise InvalidInput(
                f"Steps must be from 1 to {MAX_STEPS}; it was {self.steps}.", code="invalid_steps"
            )
        if self.guidance is not None and not (
            math.isfinite(self.guidance) and 0 <= self.guidance <= MAX_GUIDANCE
        ):
            raise InvalidInput(f"Guidance must be from 0 to {MAX_GUIDANCE:g}.", code="invalid_guidance")
        for screen in screens:
            for text in (prompt, negative):
                if text is not None:
                    screen(text, settings)
        return replace(self, style=style, prompt=prompt, negative_prompt=negative)
