"""Training throughput: our DreamBooth-LoRA trainer against the per-step work of diffusers' recipe.

The reference loop does what one step of diffusers' ``examples/dreambooth/train_dreambooth_lora.py`` does
with its defaults (no latent caching, data loaded in the main process): open and transform each photo of the
batch (Pillow equivalents of its Resize, CenterCrop, ToTensor, Normalize), tokenize the prompt per example,
VAE-encode the batch, run the text encoder, then the UNet forward and backward, the loss, gradient clipping
and an AdamW step, and read the loss for the log. It gets the same model, LoRA targets, rank, optimizer,
min-SNR weighting, precision (bf16 autocast on CUDA), batch and photos as ``train_lora``, and peft's LoRA
layers and AdamW as the script has them; ``train_lora`` trains with subject masks (the service's default,
background weight 0.1; ``--no-masks`` for the plain loss) and differs in caching the photo latents and prompt
embeddings, and (in float32) in merging each LoRA update into its layer's weight and fusing AdamW and the
gradient clipping over all parameters.

The two run in lockstep in this process: after each step of ``train_lora`` (from its progress callback) the
reference does one step, so that whatever else the machine is doing slows both alike. Steps/s of each is one
over its median step time after ``--warmup`` steps; the mean-based figures are printed too. Then
``train_lora`` runs alone and its whole wall time (load, cache, train, save) is printed, as is the share of a
reference step spent on the work that ``train_lora`` does once.

CPU (tiny model, 128 px, batch 4), then GPU (SD 1.5 architecture, 512 px, bf16, batch 1, 500 steps):

.venv/bin/python bench/train_throughput.py
.venv/bin/python bench/train_throughput.py --device cuda --full-size --resolution 512 --batch 1 --steps 500
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from petportrait.ml.photos import PhotoData
from petportrait.ml.preview import build_clip_tokenizer
from petportrait.ml.train import (
    LORA_TARGET_MODULES,
    TrainProgress,
    TrainSpec,
    load_train_components,
    snr_weights,
    train_lora,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dreambooth-pets"


def build_model(folder: Path, *, full_size: bool) -> Path:
    """A random Stable Diffusion pipeline saved into ``folder``: LoRA-test size, or SD 1.5's full size."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_clip_tokenizer(folder / "_tokenizer")
    torch.manual_seed(0)
    if full_size:  # the architecture of stable-diffusion-v1-5, random weights
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        )
        text = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12)
    else:  # the size of diffusers' own LoRA tests
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
        )
        text = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **text,
        )
    )
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder / "model")
    return folder / "model"


def script_transform(path: Path, resolution: int) -> torch.Tensor:
    """The script's per-example image work: open, exif_transpose, RGB, Resize (bilinear), CenterCrop,
    ToTensor, Normalize([0.5], [0.5])."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (tensor - 0.5) / 0.5


class ReferenceLoop:
    """A loop doing the per-step work of diffusers' DreamBooth-LoRA script (no caching), one step per call."""

    def __init__(
        self,
        source: str,
        photos: list[Path],
        *,
        resolution: int,
        batch: int,
        rank: int,
        learning_rate: float,
        device: str,
        seed: int,
    ) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0
        from peft import LoraConfig

        self.photos, self.resolution, self.batch, self.device = photos, resolution, batch, device
        self.on_cuda = torch.device(device).type == "cuda"
        self.weight_dtype = torch.bfloat16 if self.on_cuda else torch.float32
        parts = load_train_components(source, family="sd15")
        self.tokenizer, self.text_encoder = parts.tokenizers[0], parts.text_encoders[0]
        self.vae, self.unet, self.noise_scheduler = parts.vae, parts.unet, parts.noise_scheduler
        for module in (self.vae, self.text_encoder, self.unet):
            module.requires_grad_(False)
            module.to(device)
            if self.weight_dtype != torch.float32:
                module.to(dtype=self.weight_dtype)
        torch.manual_seed(seed)
        self.unet.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=rank,
                init_lora_weights="gaussian",
                target_modules=list(LORA_TARGET_MODULES),
            )
        )
        self.parameters = [p for p in self.unet.parameters() if p.requires_grad]
        for parameter in self.parameters:
            parameter.data = parameter.data.float()
        self.unet.set_attn_processor(AttnProcessor2_0())
        self.unet.train()
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8
        )
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.steps_done = 0

    def step(self) -> float:
        """One training step; returns the seconds spent loading photos and encoding (true on the CPU)."""
        started = time.perf_counter()
        # The dataloader's work for one batch: image and token ids per example, then collate.
        first = self.steps_done * self.batch
        examples = [self.photos[(first + i) % len(self.photos)] for i in range(self.batch)]
        pixels = torch.stack([script_transform(path, self.resolution) for path in examples])
        ids = torch.cat(
            [
                self.tokenizer(
                    "a photo of sks dog",
                    padding="max_length",
                    max_length=self.tokenizer.model_max_length,
                    truncation=True,
                    return_tensors="pt",
                ).input_ids
                for _ in examples
            ]
        )
        pixels = pixels.to(device=self.device, dtype=self.weight_dtype)
        ids = ids.to(self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.on_cuda):
            latents = self.vae.encode(pixels).latent_dist.sample() * self.vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=self.generator).to(self.device)
            timesteps = torch.randint(0, 1000, (self.batch,), generator=self.generator).to(self.device)
            noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
            encoder_hidden_states = self.text_encoder(ids)[0]
            encoding = time.perf_counter() - started
            prediction = self.unet(noisy, timesteps, encoder_hidden_states).sample
            loss = F.mse_loss(prediction.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
            loss = (loss * snr_weights(self.noise_scheduler, timesteps, 5.0)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, max_norm=1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss.item()  # the script logs the loss every step
        self.steps_done += 1
        return encoding


def lockstep(source: str, photos: list[Path], args: argparse.Namespace) -> dict[str, list[float]]:
    """Per-step seconds of train_lora and of the reference, run alternately, and the reference's encoding."""
    reference = ReferenceLoop(
        source,
        photos,
        resolution=args.resolution,
        batch=args.batch,
        rank=args.rank,
        learning_rate=args.learning_rate,
        device=args.device,
        seed=0,
    )
    times: dict[str, list[float]] = {
        name: [] for name in ("ours", "reference", "encoding", "ours_cpu", "reference_cpu")
    }
    last = [0.0, 0.0]

    def progress(update: TrainProgress) -> None:
        now, now_cpu = time.perf_counter(), time.process_time()
        if update.step > 1:
            times["ours"].append(now - last[0])
            times["ours_cpu"].append(now_cpu - last[1])
        encoding = reference.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        finished, finished_cpu = time.perf_counter(), time.process_time()
        times["reference"].append(finished - now)
        times["reference_cpu"].append(finished_cpu - now_cpu)
        times["encoding"].append(encoding)
        last[:] = [finished, finished_cpu]

    train_lora(spec_for(source, photos, args), progress=progress)
    # Drop the warm-up steps (ours has one step fewer: its first step has no start mark).
    for name in times:
        times[name] = times[name][max(0, args.warmup - 1) if name.startswith("ours") else args.warmup :]
    return times


def spec_for(source: str, photos: list[Path], args: argparse.Namespace) -> TrainSpec:
    """The spec the service gives: photos in memory, the LoRA returned as bytes (no file)."""
    return TrainSpec(
        base_model=source,
        photos=[PhotoData(p.name, p.read_bytes()) for p in photos],
        species="dog",
        resolution=args.resolution,
        batch_size=args.batch,
        steps=args.warmup + args.steps,
        rank=args.rank,
        alpha=args.rank,
        learning_rate=args.learning_rate,
        seed=0,
        device=args.device,
        mask_background_weight=None if args.no_masks else args.background,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--full-size", action="store_true", help="SD 1.5's UNet/VAE/CLIP sizes, random weights"
    )
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30, help="measured steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--photos", type=Path, default=DATA / "dog")
    parser.add_argument("--no-standalone", action="store_true", help="skip the standalone train_lora run")
    parser.add_argument("--background", type=float, default=0.1, help="masked loss: background weight")
    parser.add_argument("--no-masks", action="store_true", help="train_lora with the plain loss")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    with tempfile.TemporaryDirectory(prefix="petportrait-bench-") as tmp:
        started = time.perf_counter()
        source = str(build_model(Path(tmp), full_size=args.full_size))
        print(
            f"model: {'SD 1.5 size' if args.full_size else 'LoRA-test size'}, random weights, built in "
            f"{time.perf_counter() - started:.1f} s; device {args.device}, {args.resolution} px, "
            f"batch {args.batch}, "
            f"rank {args.rank}, {args.steps} measured steps after {args.warmup} warm-up, "
            f"photos {args.photos}, "
            f"masks {'off' if args.no_masks else f'on (background weight {args.background})'}, "
            f"{torch.get_num_threads()} threads"
        )
        times = lockstep(source, photos, args)
        wall = None
        if not args.no_standalone:
            started = time.perf_counter()
            train_lora(spec_for(source, photos, args))
            wall = time.perf_counter() - started

    ours = 1 / statistics.median(times["ours"])
    reference = 1 / statistics.median(times["reference"])
    ours_mean = len(times["ours"]) / sum(times["ours"])
    reference_mean = len(times["reference"]) / sum(times["reference"])
    print(
        f"reference (diffusers recipe, load and encode every step): {reference:.3f} steps/s "
        f"(mean-based {reference_mean:.3f})"
    )
    print(
        f"ours (train_lora: latents and embeddings cached, merged LoRA, fused AdamW): {ours:.3f} steps/s "
        f"(mean-based {ours_mean:.3f})"
    )
    print(f"ratio: {ours / reference:.2f}x (mean-based {ours_mean / reference_mean:.2f}x)")
    if not args.device.startswith("cuda"):
        ours_cpu = 1 / statistics.median(times["ours_cpu"])
        reference_cpu = 1 / statistics.median(times["reference_cpu"])
        print(
            "by process CPU time (less sensitive to other load on the machine): "
            f"reference {reference_cpu:.3f}, "
            f"ours {ours_cpu:.3f} steps per CPU-second, ratio {ours_cpu / reference_cpu:.2f}x"
        )
        share = statistics.median(e / t for e, t in zip(times["encoding"], times["reference"], strict=True))
        print(
            f"share of a reference step spent loading photos and running the VAE and text encoder: "
            f"{share:.0%} "
            f"(removing it alone would give {1 / (1 - share):.2f}x)"
        )
    if wall is not None:
        print(
            f"train_lora alone, {args.warmup + args.steps} steps, wall time (load, cache, train, save): "
            f"{wall:.1f} s"
        )


if __name__ == "__main__":
    main()
