"""Style presets: the ones people expect, each a template with the pet as {subject} and a negative prompt."""

from __future__ import annotations

import pytest

from petportrait.ml.styles import STYLES, Style, UnknownStyle, get_style, list_styles

EXPECTED = [
    "renaissance_noble",
    "oil_painting",
    "watercolour",
    "pencil_sketch",
    "pop_art",
    "van_gogh_night_sky",
    "astronaut",
    "superhero",
    "royal_portrait",
    "pixel_art",
    "anime",
    "studio_photo",
    "christmas_card",
]


def test_there_are_at_least_sixteen_presets_including_the_expected_ones() -> None:
    assert len(STYLES) >= 16
    assert set(EXPECTED) <= set(STYLES)


def test_each_preset_is_a_template_with_one_subject_and_a_negative_prompt() -> None:
    for name, style in STYLES.items():
        assert style.name == name
        assert style.title.strip() and style.title == style.title.strip()
        assert style.prompt.count("{subject}") == 1, name
        assert style.negative_prompt.strip(), name
        assert "{" not in style.negative_prompt


def test_format_puts_the_pet_in_the_prompt() -> None:
    prompt = get_style("astronaut").format("sks dog")
    assert "sks dog" in prompt and "{subject}" not in prompt


def test_list_styles_lists_every_preset_once_in_order() -> None:
    listed = list_styles()
    assert [s.name for s in listed] == list(STYLES)
    assert all(isinstance(s, Style) for s in listed)


def test_an_unknown_style_is_a_value_error_that_names_the_presets() -> None:
    with pytest.raises(UnknownStyle) as caught:
        get_style("cubist_nightmare")
    assert isinstance(caught.value, ValueError)
    assert "cubist_nightmare" in str(caught.value) and "watercolour" in str(caught.value)
