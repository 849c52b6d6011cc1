"""The authors' GPT-4o judge, as they ran it (`rare bench rarebench --protocol paper`).

Their script (`eval/eval_by_GPT.py` at the pinned commit; no licence, so never copied here) is fetched,
verified by its SHA-256 and parsed at run time: its rubric is the f-string assigned to one variable in
one function, with the prompt where it interpolates one. From the same script, and recorded in the
definition: one user message holding the rubric then the image (a base64 data URL labelled
image/jpeg), `max_tokens` 4096, no temperature, up to three tries, and a free-text answer
`### SCORE: s ### EXPLANATION: ...` with s from 0 to 5. Both 0 and 1 score 0 (max(s - 1, 0) / 4 * 100).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from rarecli.bench.dataset import fetch_pinned
from rarecli.bench.definition import Definition, PaperJudgeSpec, image_score
from rarecli.errors import RareError

_SCORE = "### SCORE: "
_EXPLANATION = "### EXPLANATION: "
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class PaperRubric:
    """The rubric as literal parts and the places (None) where the prompt goes."""

    parts: tuple[str | None, ...]

    def text(self, prompt: str) -> str:
        return "".join(prompt if part is None else part for part in self.parts)

    @property
    def sha256(self) -> str:
        template = "".join("{prompt}" if part is None else part for part in self.parts)
        return hashlib.sha256(template.encode("utf-8")).hexdigest()


def read_rubric(source: bytes, spec: PaperJudgeSpec) -> PaperRubric:
    """The rubric f-string in `spec.function`, assigned to `spec.variable`; RareError if it is not there."""
    where = f"{spec.script.file}: {spec.function}().{spec.variable}"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == spec.function:
            for stmt in ast.walk(node):
                if (
                    isinstance(stmt, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == spec.variable for t in stmt.targets)
                    and isinstance(stmt.value, ast.JoinedStr | ast.Constant)
                ):
                    return _rubric(stmt.value, where)
    raise RareError(f"{where} not found in the authors' judge script", hint="check paper_judge in the definition")


def _rubric(value: ast.expr, where: str) -> PaperRubric:
    if isinstance(value, ast.Constant):
        return PaperRubric((str(value.value),))
    parts: list[str | None] = []
    for piece in value.values:
        if isinstance(piece, ast.Constant):
            parts.append(str(piece.value))
        elif isinstance(piece, ast.FormattedValue) and isinstance(piece.value, ast.Name) and piece.format_spec is None:
            parts.append(None)
        else:
            raise RareError(f"{where}: the rubric interpolates something other than the prompt")
    if parts.count(None) != 1:
        raise RareError(f"{where}: expected the prompt once in the rubric, found it {parts.count(None)} times")
    return PaperRubric(tuple(parts))


def parse_paper_answer(content: str | None, scale: tuple[int, int] = (0, 5)) -> dict[str, Any] | None:
    """Their reading of an answer: the text between `### SCORE: ` and `### EXPLANATION: ` is the score,
    the rest the explanation. None when it is not there or not an integer on the scale."""
    if not content or _SCORE not in content:
        return None
    head, _, explanation = content.partition(_EXPLANATION)
    score = head.split(_SCORE, 1)[1].strip()
    if not _INTEGER.fullmatch(score) or not scale[0] <= int(score) <= scale[1]:
        return None
    return {"score": int(score), "explanation": explanation.strip()}


@dataclass(frozen=True)
class PaperProtocol:
    """How the authors asked GPT-4o and read its answer (see the module docstring)."""

    spec: PaperJudgeSpec
    rubric: PaperRubric
    name: str = "paper"

    @classmethod
    def fetch(cls, definition: Definition) -> PaperProtocol:
        spec = definition.paper_judge
        if spec is None:
            raise RareError("the RareBench definition names no paper_judge", hint="use --protocol rare")
        source = fetch_pinned(definition, spec.script, "the authors' judge script")
        return cls(spec, read_rubric(source, spec))

    @property
    def attempts(self) -> int:
        return self.spec.attempts

    def messages(self, prompt: str, image: bytes) -> list[dict[str, Any]]:
        url = f"data:{self.spec.image_mime};base64," + base64.b64encode(image).decode("ascii")
        content = [{"type": "text", "text": self.rubric.text(prompt)}, {"type": "image_url", "image_url": {"url": url}}]
        return [{"role": "user", "content": content}]

    def request(self) -> dict[str, Any]:
        return {"max_tokens": self.spec.max_tokens}  # no temperature: the API's default (1.0), as theirs

    def parse(self, content: str | None) -> dict[str, Any] | None:
        return parse_paper_answer(content, self.spec.scale)

    def score(self, judge_score: int) -> float:
        return image_score(judge_score)

    def identity(self) -> dict[str, Any]:
        return {
            "protocol": self.name,
            "script": self.spec.script.file,
            "script_sha256": self.spec.script.sha256,
            "rubric_sha256": self.rubric.sha256,
            "messages": "one user message: rubric with the prompt, then the image",
            "image_mime": self.spec.image_mime,
            "temperature": None,
            "max_tokens": self.spec.max_tokens,
            "answer": "### SCORE: s ### EXPLANATION: ...",
            "scale": list(self.spec.scale),
            "attempts": self.spec.attempts,
        }
