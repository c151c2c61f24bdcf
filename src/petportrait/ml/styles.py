"""Named style presets: a prompt template with ``{subject}`` and a negative prompt each.

``{subject}`` is replaced by the pet's token and species, e.g. ``"sks cat"``, so that the LoRA trained on
"a photo of sks cat" is what the style is applied to.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMON_NEGATIVE_PROMPT = (
    "blurry, lowres, low quality, jpeg artifacts, watermark, signature, text, deformed, extra legs, "
    "extra heads, bad anatomy, disfigured"
)


class UnknownStyle(ValueError):
    """A style name that is not one of the presets."""


@dataclass(frozen=True)
class Style:
    """A style preset: ``prompt`` is a template that contains ``{subject}``."""

    name: str
    title: str
    prompt: str
    negative_prompt: str

    def format(self, subject: str) -> str:
        """The prompt with the subject (token and species) filled in."""
        return self.prompt.format(subject=subject)


def _style(name: str, title: str, prompt: str, negative: str = "") -> Style:
    negative_prompt = f"{negative}, {COMMON_NEGATIVE_PROMPT}" if negative else COMMON_NEGATIVE_PROMPT
    return Style(name=name, title=title, prompt=prompt, negative_prompt=negative_prompt)


_PRESETS = [
    _style(
        "renaissance_noble",
        "Renaissance noble",
        "a renaissance oil portrait of {subject} as a noble, wearing an ornate velvet doublet with a lace "
        "ruff collar, dramatic chiaroscuro lighting, dark background, museum masterpiece, highly detailed",
        "modern clothing, photo, cartoon",
    ),
    _style(
        "royal_portrait",
        "Royal portrait",
        "a regal portrait of {subject} as a king, wearing a golden crown and a red ermine cloak, seated on "
        "a throne, baroque oil painting, rich colours, highly detailed",
        "modern clothing, photo, cartoon",
    ),
    _style(
        "oil_painting",
        "Oil painting",
        "an oil painting of {subject}, thick impasto brush strokes, warm colours, canvas texture, "
        "fine art portrait",
        "photo, 3d render, cartoon",
    ),
    _style(
        "watercolour",
        "Watercolour",
        "a watercolour painting of {subject}, soft washes of colour, paper texture, loose brush strokes, "
        "white background",
        "photo, 3d render, harsh lines",
    ),
    _style(
        "pencil_sketch",
        "Pencil sketch",
        "a detailed graphite pencil sketch of {subject}, cross hatching, on textured paper, monochrome",
        "colour, photo, painting",
    ),
    _style(
        "pop_art",
        "Pop art",
        "a pop art portrait of {subject} in the style of andy warhol, bold flat colours, halftone dots, "
        "four colour panels",
        "photo, realistic, muted colours",
    ),
    _style(
        "van_gogh_night_sky",
        "Van Gogh night sky",
        "a painting of {subject} under a swirling starry night sky in the style of vincent van gogh, "
        "expressive brush strokes, deep blues and yellows",
        "photo, 3d render, flat colours",
    ),
    _style(
        "astronaut",
        "Astronaut",
        "a portrait of {subject} as an astronaut wearing a white space suit and helmet, earth and stars "
        "in the background, cinematic lighting, highly detailed",
        "cartoon, painting",
    ),
    _style(
        "superhero",
        "Superhero",
        "{subject} as a superhero wearing a red cape and a mask, standing on a rooftop over a city at "
        "sunset, comic book style, dynamic pose",
        "photo, dull colours",
    ),
    _style(
        "pixel_art",
        "Pixel art",
        "pixel art of {subject}, 16-bit retro video game sprite, limited palette, crisp pixels",
        "blurry, photo, smooth gradients, 3d render",
    ),
    _style(
        "anime",
        "Anime",
        "an anime illustration of {subject}, studio ghibli style, soft cel shading, vibrant colours, "
        "detailed background",
        "photo, realistic, 3d render",
    ),
    _style(
        "studio_photo",
        "Studio photo",
        "a professional studio photo of {subject}, soft box lighting, seamless grey backdrop, "
        "85mm lens, shallow depth of field, sharp focus",
        "painting, drawing, cartoon, overexposed",
    ),
    _style(
        "christmas_card",
        "Christmas card",
        "a festive christmas card of {subject} wearing a red santa hat, beside a decorated christmas tree "
        "with warm fairy lights, snow falling, cosy",
        "summer, beach",
    ),
    _style(
        "cartoon_3d",
        "3D cartoon",
        "a cute 3d cartoon render of {subject}, pixar style, big expressive eyes, soft lighting, "
        "colourful background",
        "photo, realistic, scary",
    ),
    _style(
        "stained_glass",
        "Stained glass",
        "a stained glass window depicting {subject}, vivid jewel colours, bold lead lines, light shining "
        "through",
        "photo, blurry",
    ),
    _style(
        "steampunk",
        "Steampunk",
        "a steampunk portrait of {subject} wearing brass goggles and a leather aviator cap, gears and "
        "copper pipes in the background, detailed illustration",
        "modern, minimal",
    ),
    _style(
        "ukiyo_e",
        "Ukiyo-e woodblock",
        "a japanese ukiyo-e woodblock print of {subject}, flat colours, bold outlines, waves and mount "
        "fuji in the background",
        "photo, 3d render",
    ),
    _style(
        "cyberpunk",
        "Cyberpunk",
        "{subject} in a neon-lit cyberpunk city at night, rain, glowing pink and cyan lights, "
        "futuristic collar, cinematic",
        "daylight, dull colours",
    ),
    _style(
        "fantasy_knight",
        "Fantasy knight",
        "an epic fantasy portrait of {subject} as a knight in shining armour, holding a banner, "
        "castle in the background, dramatic lighting, digital painting",
        "modern clothing, photo",
    ),
    _style(
        "halloween",
        "Halloween",
        "{subject} wearing a witch hat beside carved glowing pumpkins, autumn leaves, spooky moonlit "
        "night, halloween card",
        "bright daylight",
    ),
]

STYLES: dict[str, Style] = {style.name: style for style in _PRESETS}


def get_style(name: str) -> Style:
    """The preset called ``name``; raises UnknownStyle naming the presets that exist."""
    try:
        return STYLES[name]
    except KeyError:
        known = ", ".join(sorted(STYLES))
        raise UnknownStyle(f"unknown style {name!r}; the styles are: {known}") from None


def list_styles() -> list[Style]:
    """All presets, in the order they are offered."""
    return list(STYLES.values())
