"""Disk cache of LLM answers, so re-planning a prompt costs no API call and gives the same plan.

Keyed by (backend, model identity, template version and content hash, prompt). Only the raw answer and
those key fields are stored, never an API key or a base URL's credentials. Files are written
atomically under `rarecli.paths.cache_dir()/llm`, one JSON file per answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from rarecli.io.atomic import cache_write, write_replace
from rarecli.paths import cache_dir


def default_folder() -> Path:

    return cache_dir() / "llm"


class ResponseCache:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_folder()

    @staticmethod
    def key(backend: str, model: str, template: str, template_hash: str, prompt: str) -> str:
        blob = json.dumps([backend, model, template, template_hash, prompt], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record, or None when absent or unreadable (a damaged entry is just a miss)."""
        path = self.path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("raw"), str) else None

    def put(self, key: str, record: dict[str, Any]) -> bool:
        """Store an answer; a cache that cannot be written is warned about (the plan still goes out)."""
        data = json.dumps({**record, "stored": time.time()}, ensure_ascii=False, indent=1).encode("utf-8")
        return cache_write("LLM answer", lambda: write_replace(self.path(key), lambda fh: fh.write(data)))
