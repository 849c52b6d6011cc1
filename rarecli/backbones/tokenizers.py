"""Tokenizers for the embedded backbones, built offline from vocabularies that ship in packages.

- CLIP: the real CLIP BPE (49,408 tokens) from the `bpe_simple_vocab_16e6.txt.gz` file that the
  open_clip_torch wheel ships. We only read that data file, located without importing open_clip
  (which needs torchvision), so token ids match real Stable Diffusion's tokenizer.
- T5: a small Unigram vocabulary made here (SD3's third text encoder only needs *a* T5 tokenizer
  for the tiny backbone; real SD3 loads its own).
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

from rarecli.errors import RareError

CLIP_VOCAB_SIZE = 49408
_CLIP_MERGES = CLIP_VOCAB_SIZE - 256 * 2 - 2  # bytes, bytes+</w>, two special tokens


def clip_bpe_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RareError(
            "the CLIP BPE vocabulary is missing (it ships in the open_clip_torch wheel)",
            hint="`pip install --no-deps open_clip_torch` (make install does this)",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise RareError(f"CLIP BPE vocabulary not found at {path}", hint="reinstall open_clip_torch")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP byte-level BPE maps every byte to a printable character so merges are plain text.
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    with gzip.open(clip_bpe_path(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = lines[1 : _CLIP_MERGES + 1]  # line 0 is a version header
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != CLIP_VOCAB_SIZE:
        raise RareError(f"unexpected CLIP BPE vocabulary size {len(tokens)} (want {CLIP_VOCAB_SIZE})")
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(max_length: int = 77):
    """A transformers CLIPTokenizer with the real CLIP vocabulary, built offline."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    pairs = [tuple(m.split()) for m in merges]
    return CLIPTokenizer(vocab=dict(vocab), merges=pairs, model_max_length=max_length)


_T5_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "and",
    "with",
    "in",
    "on",
    "at",
    "to",
    "from",
    "by",
    "for",
    "is",
    "are",
    "photo",
    "image",
    "picture",
    "painting",
    "drawing",
    "digit",
    "handwritten",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "cat",
    "dog",
    "frog",
    "tiger",
    "horse",
    "bird",
    "fish",
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
    "hairy",
    "furry",
    "wooden",
    "glass",
    "metal",
    "small",
    "large",
    "tall",
    "short",
    "round",
    "square",
    "standing",
    "sitting",
    "running",
    "flying",
    "eating",
    "sleeping",
    "man",
    "woman",
    "child",
    "tree",
    "house",
    "car",
    "flower",
]


def t5_tokenizer(max_length: int = 77):
    """A small T5 (Unigram) tokenizer: special tokens, whole words, then single characters."""
    from transformers import T5Tokenizer

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()"))
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + w, -2.0 - i * 1e-3) for i, w in enumerate(_T5_WORDS)]
    vocab += [("▁", -8.0)] + [(c, -10.0) for c in chars] + [("▁" + c, -9.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)
