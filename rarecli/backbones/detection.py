"""Loading the models R2F+ masks objects with: a zero-shot object detector (GroundingDINO) and a
box-prompted segmenter (SAM), through transformers' Auto classes, by Hub id, local folder or embedded
name (`tiny-grounding-dino`, `tiny-sam`). Loaded once per process, frozen, in fp32 on the manager's
device (they are small next to the diffusion model, and their outputs are thresholded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from rarecli.backbones.loading import ModelRef, hub_error, resolve
from rarecli.runtime.cache import MODEL_CACHE
from rarecli.runtime.device import DeviceManager
from rarecli.runtime.quiet import quiet_hub, quiet_libraries

_AUTO = {"detector": "AutoModelForZeroShotObjectDetection", "segmenter": "AutoModelForMaskGeneration"}


@dataclass
class DetectionModel:
    ref: ModelRef
    model: Any
    processor: Any

    def to_meta(self) -> dict[str, Any]:
        meta = {"model": self.ref.name, "source": self.ref.source, "revision": self.ref.revision}
        if self.ref.source == "embedded":
            meta["weights"] = "random: an embedded tiny model, its boxes and masks are arbitrary"
        return meta


def load_detection_model(name: str, kind: str, manager: DeviceManager) -> DetectionModel:
    """The detector or segmenter called `name` (kind: "detector" or "segmenter")."""
    ref = resolve(name, kind=kind)
    key = (kind, ref.source, ref.location, manager.device)

    def load() -> DetectionModel:
        import transformers

        folder = Path(ref.location)
        with quiet_libraries():
            if ref.source == "hub":
                try:
                    with quiet_hub():
                        folder = Path(snapshot_download(ref.location, revision=ref.revision))
                except Exception as exc:
                    raise hub_error(ref.location, exc) from exc
            model = getattr(transformers, _AUTO[kind]).from_pretrained(folder)
            processor = transformers.AutoProcessor.from_pretrained(folder)
        model.requires_grad_(False).eval().to(manager.device)
        commit = folder.name if folder.parent.name == "snapshots" else ref.revision
        return DetectionModel(ModelRef(ref.name, ref.source, str(folder), commit), model, processor)

    return MODEL_CACHE.get(key, load)
