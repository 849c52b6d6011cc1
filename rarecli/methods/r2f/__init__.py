"""Rare-to-Frequent (Park et al., "Rare-to-Frequent: Unlocking Compositional Generation Power of
Diffusion Models on Rare Concepts with LLM Guidance", ICLR 2025, arXiv 2410.22376).

`schedule`: plan -> prompt per step (pure); `sampler`: SD3/SDXL/SD sampling through the step callback;
`plans`: reading plan files and JSON lines. The planner itself lives in `rarecli.llm`.
"""
