"""The model cache: one load per process for a given (model, revision, device, dtype, ...).

Every command goes through `MODEL_CACHE`, so a bench run that renders hundreds of prompts, or a
seedselect run that also inverts references, loads each model once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any


class ModelCache:
    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self.hits += 1
                return self._items[key]
            self.misses += 1
            value = load()
            self._items[key] = value
            return value

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every model (and free GPU memory they held)."""
        with self._lock:
            self._items.clear()
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


MODEL_CACHE = ModelCache()
