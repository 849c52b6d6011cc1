"""`rare augment`: few-shot and long-tail data augmentation over a folder of class folders.

SeedSelect (Samuel et al., AAAI 2024) and NAO (NeurIPS 2023) generate images of each class from its few
real images and train a recognition model on the union. `classes` reads the ROOT (one folder per class),
`layout` is the DATASET folder (the same layout, plus a manifest), `run` is the resumable batch job.
"""
