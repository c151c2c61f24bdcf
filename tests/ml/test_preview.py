"""The offline preview model: built here, once, with a local tokenizer, loaded like any real model."""

from __future__ import annotations

import json
from pathlib import Path

from petportrait.ml.preview import (
    PREVIEW_MARKER,
    PREVIEW_MODEL_ID,
    PREVIEW_VERSION,
    build_clip_vocabulary,
    ensure_preview_model,
    is_preview_model,
)


def test_the_preview_model_is_a_diffusers_folder_marked_as_preview(preview_model: Path) -> None:
    assert preview_model.name == PREVIEW_MODEL_ID
    index = json.loads((preview_model / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (preview_model / part).is_dir(), part
    assert is_preview_model(preview_model)
    assert json.loads((preview_model / PREVIEW_MARKER).read_text())["version"] == PREVIEW_VERSION


def test_the_preview_model_is_built_once(preview_model: Path) -> None:
    weights = preview_model / "unet" / "diffusion_pytorch_model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_preview_model(preview_model.parent) == preview_model
    assert weights.stat().st_mtime_ns == before


def test_an_outdated_preview_model_is_rebuilt(tmp_path: Path, preview_model: Path) -> None:
    folder = tmp_path / PREVIEW_MODEL_ID
    folder.mkdir()
    (folder / PREVIEW_MARKER).write_text(json.dumps({"version": PREVIEW_VERSION - 1}))
    assert ensure_preview_model(tmp_path) == folder
    assert (folder / "unet" / "config.json").is_file()
    assert is_preview_model(folder)
    assert [p.name for p in tmp_path.iterdir()] == [PREVIEW_MODEL_ID]  # no staging folder left behind


def test_the_tokenizer_is_built_locally_and_knows_the_token_and_species(preview_model: Path) -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(preview_model / "tokenizer")
    assert tokenizer.tokenize("a photo of sks cat") == ["a</w>", "photo</w>", "of</w>", "sks</w>", "cat</w>"]
    # A word it has never seen is still encoded, byte by byte, as CLIP does.
    assert len(tokenizer.tokenize("zyxwv")) == 5
    assert tokenizer("a photo").input_ids[0] == tokenizer.bos_token_id


def test_every_listed_word_becomes_one_token_of_the_vocabulary() -> None:
    words = ["sks", "cat", "catalogue", "cathedral", "dog", "dogged"]
    vocab, merges = build_clip_vocabulary(words)
    for word in words:
        assert f"{word}</w>" in vocab
    assert len(set(vocab.values())) == len(vocab)
    assert len(merges) == len(set(merges))
