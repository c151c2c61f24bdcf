"""The offline preview model: a tiny Stable Diffusion pipeline with random weights, built on this machine.

It lets the whole service run, train and render end to end on a CPU-only machine with no network and no
downloaded weights. It has the real architecture (UNet, VAE, CLIP text encoder, CLIP tokenizer, scheduler),
is written with ``save_pretrained`` and read back with the same ``from_pretrained`` code as a real model.
Its images are noise: everything made with it is marked ``preview``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from petportrait.files import private_dir, private_tree

PREVIEW_MODEL_ID = "petportrait-preview"
# Bump when the architecture or the tokenizer changes: an older folder is then rebuilt.
PREVIEW_VERSION = 1
PREVIEW_MARKER = "petportrait_preview.json"
PREVIEW_RESOLUTION = 256

# Words the preview tokenizer knows whole; anything else is spelled out byte by byte, as in CLIP.
_BASE_WORDS = """
a an the of in on at with and as by for to from under over beside photo picture portrait painting pet
sks cat dog rabbit bird animal cute fluffy sitting lying looking camera high quality detailed background
blurry lowres low quality ugly deformed text watermark preview
"""


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (GPT-2's) reversible map from bytes to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def _preview_words() -> list[str]:
    """The words given a single token: the base words and every word of the style presets."""
    from petportrait.ml.styles import list_styles

    text = _BASE_WORDS + " ".join(f"{s.prompt} {s.negative_prompt}" for s in list_styles())
    words: set[str] = set()
    for raw in text.lower().replace("{subject}", " ").split():
        word = "".join(ch for ch in raw if ch.isascii() and ch.isalpha())
        if len(word) > 1:
            words.add(word)
    return sorted(words)


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: merge the lowest-ranked adjacent pair until none applies."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(itertools.pairwise(symbols))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        symbols = [*symbols[:i], symbols[i] + symbols[i + 1], *symbols[i + 2 :]]
    return symbols


def build_clip_vocabulary(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """A CLIP-format byte-level BPE vocabulary and merge list in which each of ``words`` is one token.

    Each word is encoded with the merges so far and, while it is more than one token, the merge of its first
    two tokens is appended. A merge added later has a higher rank than every earlier one, so it never changes
    how an earlier word is encoded.
    """
    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in alphabet + [f"{ch}</w>" for ch in alphabet]:
        vocab[token] = len(vocab)
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        symbols = _bpe([*word[:-1], f"{word[-1]}</w>"], ranks)
        while len(symbols) > 1:
            ranks[(symbols[0], symbols[1])] = len(ranks)
            vocab.setdefault(symbols[0] + symbols[1], len(vocab))
            symbols = _bpe(symbols, ranks)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    merges = [f"{left} {right}" for (left, right), _ in sorted(ranks.items(), key=lambda item: item[1])]
    return vocab, merges


def build_clip_tokenizer(folder: Path) -> Any:
    """Write a CLIP tokenizer (vocab.json, merges.txt and tokenizer.json) into ``folder`` and load it."""
    from transformers import CLIPTokenizer

    vocab, merges = build_clip_vocabulary(_preview_words())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_preview_pipeline(folder: Path, *, seed: int = 0) -> None:
    """Build the tiny random Stable Diffusion pipeline and ``save_pretrained`` it into ``folder``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer_dir = folder / "_tokenizer"
    tokenizer = build_clip_tokenizer(tokenizer_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(  # type: ignore[no-untyped-call]
            sample_size=PREVIEW_RESOLUTION // 8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
        )
        vae = AutoencoderKL(  # type: ignore[no-untyped-call]
            sample_size=PREVIEW_RESOLUTION,
            in_channels=3,
            out_channels=3,
            block_out_channels=(16, 32, 64, 64),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=16,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=5,
                max_position_embeddings=77,
                projection_dim=32,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = PNDMScheduler(  # type: ignore[no-untyped-call]
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline: Any = StableDiffusionPipeline(  # type: ignore[no-untyped-call]
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    # The saved tokenizer folder keeps vocab.json and merges.txt too, for tokenizer classes that need them.
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(tokenizer_dir / name, folder / "tokenizer" / name)
    shutil.rmtree(tokenizer_dir)
    marker = {
        "id": PREVIEW_MODEL_ID,
        "version": PREVIEW_VERSION,
        "resolution": PREVIEW_RESOLUTION,
        "note": "random weights built offline by petportrait; its images are noise, not portraits",
    }
    (folder / PREVIEW_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def is_preview_model(source: str | Path) -> bool:
    """Whether ``source`` is a folder holding the preview model."""
    return (Path(source) / PREVIEW_MARKER).is_file()


def _preview_version(folder: Path) -> int | None:
    try:
        marker = json.loads((folder / PREVIEW_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = marker.get("version") if isinstance(marker, dict) else None
    return version if isinstance(version, int) else None


def ensure_preview_model(models_dir: Path) -> Path:
    """The preview model's folder under ``models_dir``, built on first use (safe with concurrent builders)."""
    folder = models_dir / PREVIEW_MODEL_ID
    if _preview_version(folder) == PREVIEW_VERSION:
        return folder
    private_dir(models_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{PREVIEW_MODEL_ID}-", dir=models_dir))
    try:
        build_preview_pipeline(staging)
        private_tree(staging)  # like everything in the data folder: the service's user only
        if folder.exists() and _preview_version(folder) != PREVIEW_VERSION:
            # An older or half-written preview: replace it.
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(staging, folder)
        except OSError:
            if _preview_version(folder) != PREVIEW_VERSION:  # not a concurrent builder winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
