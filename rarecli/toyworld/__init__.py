"""`toy-digits`: a miniature long-tail world in which the rare-concept methods can be measured on a CPU.

Built by `make toy-world` (rarecli.toyworld.build) from scikit-learn's `load_digits` (1,797 8x8
handwritten digits, shipped inside the package, no download):

- `toy-digits`: a text-conditional latent diffusion model (diffusers `StableDiffusionPipeline`) trained
  on a deliberately long-tailed split: a few digits frequent, the others rare (<= 5 distinct images);
- `toy-clip`: a CLIP-like image/text model (transformers `CLIPModel`) trained contrastively on the
  balanced set, as web CLIP knows concepts that a generator under-represents;
- a judge (small CNN) trained on a held-out split, used only for evaluation (`judge.py`);
- reference-image folders for the rare digits, drawn from images no model was trained on.

This module only names things. The toy world sits above `methods/` (it measures them); the embedded
backbones find its weights through `rarecli.paths.toy_world_dir`, not through this package.
"""

from __future__ import annotations

from rarecli.paths import toy_world_dir

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

WEIGHTS_DIR = toy_world_dir()
PIPELINE_DIR = WEIGHTS_DIR / "toy-digits"
CLIP_DIR = WEIGHTS_DIR / "toy-clip"
JUDGE_DIR = WEIGHTS_DIR / "judge"
REFS_DIR = WEIGHTS_DIR / "refs"
MANIFEST = WEIGHTS_DIR / "manifest.json"
CLIP_PREPROCESS = "rare_clip.json"


def prompt_for(digit: int) -> str:
    """The prompt the world is trained with for a digit: 'a handwritten digit seven'."""
    return f"a handwritten digit {DIGIT_WORDS[digit]}"


def digit_of_prompt(prompt: str) -> int | None:
    """The digit a prompt names (its last number word), or None."""
    words = prompt.lower().replace(",", " ").split()
    for word in reversed(words):
        if word in DIGIT_WORDS:
            return DIGIT_WORDS.index(word)
    return None
