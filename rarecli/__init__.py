"""rare: make pre-trained text-to-image diffusion models draw rare concepts."""

__version__ = "0.1.0"
