"""The portrait engine: photos in, LoRA weights out; weights and a style in, images out.

No web, database or settings imports: every function takes explicit arguments (paths, device, dtype).

- ``photos``: square crops that keep the animal, at the model's resolution.
- ``masks``: subject masks in memory (GrabCut seeded from saliency, or a learned segmenter).
- ``train``: ``train_lora(spec, progress=..., should_stop=...)``, DreamBooth-LoRA on a diffusers base model.
- ``render``: ``Renderer(source, device).render(RenderRequest(...))``.
- ``regions``: several pets in one portrait, each LoRA acting in its own region.
- ``likeness``: DreamBench's DINO, CLIP-I and CLIP-T scores of a model's renders.
- ``styles``: the named style presets.
- ``models``: which device and base model to use, and loading them.
- ``preview``: the offline preview model (tiny, random, clearly marked).
- ``demo``: train on a folder of photos and render a few styles.

Modules import torch and diffusers when used, so importing this package is cheap.
"""
