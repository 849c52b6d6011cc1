"""SeedSelect and NAO-SeedSelect: optimise the initial noise so the image matches reference images.

- SeedSelect: Samuel, Ben-Ari, Raviv, Darshan, Chechik, "Generating images of rare concepts using
  pre-trained diffusion models", AAAI 2024 (arXiv 2304.14530). A rare concept is often drawable from
  *some* seed; SeedSelect finds one by back-propagating a CLIP (semantic) + VAE-latent (appearance)
  loss against a few reference images through the denoising loop into the seed. The diffusion model
  is never fine-tuned.
- NAO-SeedSelect: Samuel, Ben-Ari, Darshan, Chechik, "Norm-guided latent space exploration for
  text-to-image generation", NeurIPS 2023 (arXiv 2306.08687). The references are DDIM-inverted to seeds
  (`rarecli.methods.inversion`), their NAO centroid and the NAO paths to it are computed
  (`rarecli.seeds.nao`), and short SeedSelect refinements (5 iterations, lr 0.05 -> 0.005, guidance 1)
  start from the centroid and from points on those paths.

Modules: `config` (the job, the paper's defaults, the checks), `references` (reading the folder,
bootstrap subsets, targets), `objective` (the loss and the optimiser, over `rarecli.methods.ddim`'s
differentiable, checkpointed DDIM loop), `session` (what a run computes once: `prepare`), `method` (the
registered `seedselect` / `nao-seedselect`: batches, progress, provenance of each image) and `run`
(writes, per image, the optimised seed as safetensors, the PNG rendered from it and `<stem>.run.json`).

Where this departs from the authors' code, on purpose:
- weight decay 0 (theirs: AdamW's default 0.01, which shrinks the seed's norm off the Gaussian shell);
- every reference is used (theirs: two, by directory order), and for several images each SeedSelect
  image gets its own bootstrap resample of the references (the first image: all of them once);
- the prompt's underscores become spaces (ImageNet-style class names such as `tiger_cat` were passed raw);
- text embeddings and reference targets are computed once per run, and the denoising loop is
  checkpointed per step, so memory does not grow with `--inner-steps`;
- the best seed seen is kept (theirs: whatever the last step left), the run stops early on a plateau,
  and everything is saved: seed, image rendered from it, loss curve.
"""
