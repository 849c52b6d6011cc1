"""The `gpt-4o` judge's description: a vision model grading each image against a rubric, ours
(`--protocol rare`, `gpt_judge.RubricProtocol`) or the authors' (`--protocol paper`, `paper_judge`)."""

from __future__ import annotations

from typing import Any

from rarecli.bench.definition import Definition
from rarecli.bench.gpt_judge import GPTJudge, RubricProtocol
from rarecli.bench.paper_judge import PaperProtocol
from rarecli.bench.verdict import Judge
from rarecli.llm.openai_client import url_without_credentials

PER_IMAGE = "max(s - 1, 0) / 4 * 100"


class GPT4oJudge:
    name = "gpt-4o"
    summary = "GPT-4o grades each image 1-5 against a rubric (the paper's protocol; OPENAI_API_KEY)"
    protocols = ("rare", "paper")
    online = True  # built, and so checked (API key, the authors' script), before any image is drawn
    uses_device = False

    def default_model(self, definition: Definition, protocol: str) -> str:
        if protocol == "paper" and definition.paper_judge is not None:
            return definition.paper_judge.model
        return definition.judge.model

    def protocol_for(self, definition: Definition, protocol: str) -> RubricProtocol | PaperProtocol:
        """How it asks and reads (the paper's fetches and verifies the authors' script)."""
        return PaperProtocol.fetch(definition) if protocol == "paper" else RubricProtocol(definition.judge)

    def identity(self, model: str, definition: Definition, protocol: Any) -> dict[str, Any]:
        # Our rubric's identity has no `protocol` key (runs made before there were protocols stay valid).
        if isinstance(protocol, PaperProtocol):
            return {"name": self.name, "model": model, **protocol.identity(), "per_image": PER_IMAGE}
        spec = definition.judge
        return {
            "name": self.name,
            "model": model,
            "rubric_version": spec.rubric_version,
            "rubric_sha256": spec.rubric_sha256,
            "temperature": spec.temperature,
            "max_tokens": spec.max_tokens,
            "per_image": PER_IMAGE,
        }

    def build(self, model: str, definition: Definition, manager: Any, base_url: str | None, protocol: Any) -> Judge:
        return GPTJudge(protocol or RubricProtocol(definition.judge), model, base_url=base_url)

    def endpoint(self, base_url: str | None) -> str | None:
        """The server it asks, as a run's config records it (credentials removed)."""
        return url_without_credentials(base_url)

    def scale(self, identity: dict[str, Any]) -> str:
        """The scale its scores are on: the protocol's (`rare` when unrecorded)."""
        return str(identity.get("protocol", "rare"))
