"""RareBench (Park et al., "Rare-to-Frequent", ICLR 2025, arXiv 2410.22376): the benchmark definition,
its prompt files, generation methods, judges, the resumable run and the report.

Library code: nothing here prints to stdout or exits; `rarecli.cli.bench` is the command layer.
"""
