"""LLM planners for Rare-to-Frequent (Park et al., ICLR 2025, arXiv 2410.22376).

`schema` defines the plan, `grammar` turns its JSON schema into a GBNF grammar, `openai_backend` and
`llama_backend` ask a model, `cache` keeps answers on disk, and `planner` ties them together with
validation, repair and bounded retries. Nothing here imports openai or llama_cpp at module level.
"""
