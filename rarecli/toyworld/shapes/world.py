"""The built shapes world, loaded: the pipeline (through the product's own loader) and the judge.

The judge reads colour and shape separately; for a two-object image it reads each box (cropped and
resized to the judge's input, as an object's own image)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from rarecli.backbones.loading import load_pipeline
from rarecli.errors import RareError
from rarecli.paths import toy_shapes_dir
from rarecli.runtime.device import DeviceManager
from rarecli.toyworld.shapes import data
from rarecli.toyworld.shapes.judge import judge_module

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class Reading:
    colour: str
    shape: str
    colour_confidence: float
    shape_confidence: float


class ShapesJudge:
    def __init__(self, module: Any) -> None:
        self.module = module.eval()

    @classmethod
    def load(cls, folder: Path | None = None) -> ShapesJudge:
        from safetensors.torch import load_file

        folder = Path(folder) if folder is not None else toy_shapes_dir() / "judge"
        if not (folder / "model.safetensors").is_file():
            raise RareError(f"the shapes world's judge is not built: {folder}", hint="run `make toy-shapes`")
        module = judge_module()
        module.load_state_dict(load_file(str(folder / "model.safetensors")))
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return cls(module)

    def read(self, images: list[Image.Image], box: tuple[float, float, float, float] | None = None) -> list[Reading]:
        """Colour and shape of each image's object (of the part inside `box`, fractions x0 y0 x1 y1)."""
        import torch

        arrays = []
        for image in images:
            image = image.convert("RGB")
            if box is not None:
                w, h = image.size
                x0, y0, x1, y1 = box
                side = max((x1 - x0) * w, (y1 - y0) * h)  # a square crop around the box, as objects are drawn
                cx, cy = (x0 + x1) / 2 * w, (y0 + y1) / 2 * h
                image = image.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))
            if image.size != (data.SIZE, data.SIZE):
                image = image.resize((data.SIZE, data.SIZE), PILImage.Resampling.BOX)
            arrays.append(np.asarray(image, dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        nc = len(data.COLOURS)
        with torch.inference_mode():
            logits = self.module(x)
            pc, ps = torch.softmax(logits[:, :nc], -1), torch.softmax(logits[:, nc:], -1)
        return [
            Reading(data.COLOURS[int(c.argmax())], data.SHAPES[int(s.argmax())], float(c.max()), float(s.max()))
            for c, s in zip(pc, ps, strict=True)
        ]


def load_pipeline_cpu() -> Any:
    """toy-shapes through the product's loader, on the CPU in fp32 (as the evaluation runs)."""
    return load_pipeline("toy-shapes", DeviceManager("cpu", "fp32"))
