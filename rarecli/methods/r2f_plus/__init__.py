"""R2F+ (region-guided Rare-to-Frequent, Park et al., ICLR 2025): an LLM plans each object's box and
stand-ins (`schema`, `answer`: the plan and how an answer becomes one); each object is drawn alone in its
box, then the base prompt with attention box guidance and the objects' latents fused inside their masks
(`method`, `sampler`, `attention`, `schedule`, `masks`, `detect`, `geometry`). SD3 only."""
