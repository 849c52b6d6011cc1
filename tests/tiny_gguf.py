"""A tiny random-weight LLaMA written as GGUF by the test-suite itself (no download).

Two layers, hidden size 64, a byte-level `gpt2` BPE vocabulary (the 256 byte symbols, a few merges and the
ChatML special tokens) and a ChatML chat template, so llama-cpp-python loads it, formats chats from the
GGUF's own template and decodes under a grammar exactly as it does a real model. Its text is random;
the tests rely only on grammar-constrained decoding making that text parse.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _byte_symbols() -> list[str]:
    """GPT-2's reversible byte -> printable-character map, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def write_tiny_llama(path: Path, seed: int = 0, hidden: int = 64, layers: int = 2, context: int = 4096) -> Path:
    """Write the model to `path` (about 0.5 MB) and return it."""
    import gguf
    import numpy as np

    symbols = _byte_symbols()
    space = symbols[ord(" ")]
    # A handful of merges so the BPE merge path is exercised, not just single bytes.
    pairs = [(space, "a"), (space, "t"), ("t", "h"), ("e", "r"), ("i", "n"), ('"', ":")]
    merges = [f"{a} {b}" for a, b in pairs]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = symbols + [a + b for a, b in pairs] + specials
    types = [gguf.TokenType.NORMAL] * (len(tokens) - len(specials)) + [gguf.TokenType.CONTROL] * len(specials)
    vocab = len(tokens)
    eos = tokens.index("<|im_end|>")
    bos = tokens.index("<|endoftext|>")

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("rare-tiny-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(2 * hidden)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // 4)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    ones = np.ones(hidden, dtype=np.float32)
    # numpy shapes are (rows, cols); GGUF stores the reversed order llama.cpp expects.
    writer.add_tensor("token_embd.weight", weight(vocab, hidden))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(2 * hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(2 * hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(hidden, 2 * hidden))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", weight(vocab, hidden))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
