"""The likeness score on tiny random DINO and CLIP models built here: the whole path (renders of a model on
the preview model, DreamBench's three numbers, kept on the model), and a clear refusal without them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from petportrait.ml.likeness import (
    DREAMBENCH_PROMPTS,
    Embedders,
    LikenessUnavailable,
    score_likeness,
)
from petportrait.ml.photos import load_photo
from petportrait.ml.render import Renderer, RenderRequest
from petportrait.ml.train import TrainedLora

from .conftest import photos_of


def build_tiny_embedders(folder: Path, tokenizer_source: Path) -> tuple[Path, Path]:
    """A tiny random DINO-like ViT and a tiny random CLIP, each saved with its processor (save_pretrained)."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    torch.manual_seed(0)
    dino, clip = folder / "dino", folder / "clip"
    vit = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
    )
    ViTModel(vit, add_pooling_layer=False).save_pretrained(dino)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(dino)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_source)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(clip)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(clip)
    return dino, clip


@pytest.fixture(scope="module")
def tiny_embedders(preview_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tiny_embedders(tmp_path_factory.mktemp("embedders"), preview_model / "tokenizer")


def test_renders_of_a_model_are_scored_by_dreambench_protocol(
    tiny_embedders: tuple[Path, Path], renderer: Renderer, pet_loras: dict[str, TrainedLora]
) -> None:
    embedders = Embedders.from_pretrained(*map(str, tiny_embedders))
    photos = [load_photo(p) for p in photos_of("dog")[:2]]
    seen: list[tuple[str, int, int]] = []

    def render(prompt: str, count: int, seed: int) -> list[Image.Image]:
        seen.append((prompt, count, seed))
        request = RenderRequest(
            species="dog", lora=pet_loras["dog"].data, prompt=prompt, seed=seed, count=count, steps=2
        )
        return renderer.render(request).images

    score = score_likeness(
        embedders=embedders,
        render=render,
        photos=photos,
        token="sks",
        class_noun="dog",
        prompts=DREAMBENCH_PROMPTS[:2],
        per_prompt=2,
    )
    assert seen == [("a sks dog in the jungle", 2, 0), ("a sks dog in the snow", 2, 2)]
    assert (score.renders, score.photos, score.prompts) == (4, 2, 2)
    for value in (score.dino, score.clip_i, score.clip_t):
        assert -1.0 <= value <= 1.0
    # The same photos as "renders" score (nearly) 1 against themselves: the numbers measure similarity.
    itself = score_likeness(
        embedders=embedders,
        render=lambda prompt, count, seed: photos[:1],
        photos=photos[:1],
        token="sks",
        class_noun="dog",
        prompts=DREAMBENCH_PROMPTS[:1],
        per_prompt=1,
    )
    assert itself.dino == pytest.approx(1.0, abs=1e-5) and itself.clip_i == pytest.approx(1.0, abs=1e-5)
    assert score.dino < itself.dino


def test_without_embedding_models_the_score_is_refused_saying_what_to_set() -> None:
    with pytest.raises(LikenessUnavailable, match="PETPORTRAIT__ML__LIKENESS_DINO") as caught:
        Embedders.from_pretrained(None, None)
    assert "facebook/dino-vits16" in str(caught.value) and "openai/clip-vit-base-patch32" in str(caught.value)
    with pytest.raises(LikenessUnavailable, match="could not be loaded"):
        Embedders.from_pretrained("/nonexistent/dino", "/nonexistent/clip")


def test_the_eval_command_refuses_clearly_without_embedders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from petportrait.cli import app

    monkeypatch.setenv("PETPORTRAIT__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PETPORTRAIT__ENVIRONMENT", "development")
    monkeypatch.delenv("PETPORTRAIT__DATABASE__URL", raising=False)
    result = CliRunner().invoke(app, ["eval", "some-model"])
    assert result.exit_code == 2
    assert "likeness: absent: no DINO or CLIP embedding model is configured" in result.output


def test_the_eval_path_scores_a_trained_model_and_keeps_the_scores_on_it(
    services: object, tmp_path: Path, tiny_embedders: tuple[Path, Path]
) -> None:
    from fastapi.testclient import TestClient

    from petportrait.portraits.likeness import evaluate_model
    from petportrait.portraits.models import PetModel
    from petportrait.web.app import Services, create_app
    from tests.conftest import sign_up
    from tests.notifications.test_flow import run_jobs

    assert isinstance(services, Services)
    ml = services.settings.ml
    ml.train_steps, ml.resolution, ml.device, ml.mask_background_weight = 2, 64, "cpu", None
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        alice = sign_up(client, "alice@example.com")
        pet = client.post("/api/v1/pets", json={"name": "Rex", "species": "dog"}, headers=alice).json()
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos_of("dog")[:2]]
        assert client.post(f"/api/v1/pets/{pet['id']}/photos", files=files, headers=alice).status_code == 201
        trained = client.post(f"/api/v1/pets/{pet['id']}/models", headers=alice).json()
        run_jobs(services, tmp_path, trained["job"]["id"])
        ml.likeness_dino, ml.likeness_clip = map(str, tiny_embedders)
        with services.session_factory() as session:
            score = evaluate_model(
                session,
                blobs=services.blobs,
                settings=services.settings,
                model_id=trained["model"]["id"],
                per_prompt=1,
                prompt_count=2,
                steps=2,
            )
        assert set(score) == {"dino", "clip_i", "clip_t", "renders", "photos", "prompts"}
        assert (score["renders"], score["photos"]) == (2, 2)
        shown = client.get(f"/api/v1/models/{trained['model']['id']}", headers=alice).json()
        assert shown["likeness"] == score
    with services.session_factory() as session:
        assert session.scalars(select(PetModel.likeness)).one() == score
