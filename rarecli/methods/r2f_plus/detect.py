"""Object masks from a text-prompted detector and a box-prompted segmenter, as the authors make them.

The detector (GroundingDINO) looks for the object's phrase in the object's own image and the best-
scoring box is kept; the segmenter (SAM) outlines the object inside that box, and its first mask is
the object's mask. At latent size the mask is resized bilinearly, so only its edges are soft.

Detection is weak, and the object's (centred) box is its mask instead, when the best score is below
`min_score` (default 0.3: GroundingDINO's usual box threshold is 0.35, and the authors keep even a box
scored near 0, which pastes a wrong region), or when the segmenter's mask is empty. The image's
metadata says which objects fell back and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rarecli.backbones.detection import DetectionModel, load_detection_model
from rarecli.methods.r2f_plus.geometry import Box
from rarecli.methods.r2f_plus.masks import Mask, box_only
from rarecli.methods.r2f_plus.schema import PlusObject
from rarecli.runtime.device import DeviceManager

if TYPE_CHECKING:
    from PIL import Image



def detection_query(phrase: str) -> str:
    """GroundingDINO's text form: lower case, ending in a period."""
    text = phrase.strip().lower()
    return text if text.endswith(".") else text + "."


class DetectorMasker:
    name = "detector"

    def __init__(self, detector: str, segmenter: str, manager: DeviceManager, min_score: float) -> None:
        self.detector_name, self.segmenter_name = detector, segmenter
        self.manager = manager
        self.min_score = min_score
        self._models: tuple[DetectionModel, DetectionModel] | None = None

    def load(self) -> tuple[DetectionModel, DetectionModel]:
        if self._models is None:
            self._models = (
                load_detection_model(self.detector_name, "detector", self.manager),
                load_detection_model(self.segmenter_name, "segmenter", self.manager),
            )
        return self._models

    def to_json(self) -> dict[str, Any]:
        detector, segmenter = self.load()
        return {"detector": detector.to_meta(), "segmenter": segmenter.to_meta(), "min_detection_score": self.min_score}

    def best_box(self, image: Image.Image, phrase: str) -> tuple[list[float], float] | None:
        """The best-scoring box for `phrase` in pixels (x0, y0, x1, y1) and its score; None if none."""
        import torch

        detector, _ = self.load()
        inputs = detector.processor(images=image, text=detection_query(phrase), return_tensors="pt")
        inputs = inputs.to(self.manager.device)
        with torch.no_grad():
            outputs = detector.model(**inputs)
        found = detector.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=[image.size[::-1]]
        )[0]
        if len(found["scores"]) == 0:
            return None
        best = int(found["scores"].argmax())
        return [float(v) for v in found["boxes"][best]], float(found["scores"][best])

    def outline(self, image: Image.Image, pixel_box: list[float]) -> Any:
        """SAM's first mask for the box, as a bool (height, width) tensor at image size."""
        import torch

        _, segmenter = self.load()
        inputs = segmenter.processor(image, input_boxes=[[pixel_box]], return_tensors="pt").to(self.manager.device)
        with torch.no_grad():
            outputs = segmenter.model(**inputs)
        masks = segmenter.processor.post_process_masks(
            outputs.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu()
        )
        return masks[0][0][0].bool()

    def mask(self, image: Image.Image, obj: PlusObject, box: Box, latent_size: tuple[int, int]) -> Mask:
        import torch

        found = self.best_box(image, obj.phrase)
        if found is None:
            return box_only(box, image.size, latent_size, "box (weak detection: nothing detected)")
        pixel_box, score = found
        if score < self.min_score:
            return box_only(box, image.size, latent_size, f"box (weak detection: best score {score:.2f} < {self.min_score})")
        full = self.outline(image, pixel_box).float()
        if not full.any():
            return box_only(box, image.size, latent_size, f"box (weak detection: empty mask, score {score:.2f})")
        latent = torch.nn.functional.interpolate(full[None, None], size=latent_size, mode="bilinear")[0, 0]
        return Mask(latent, full, f"detector (score {score:.2f})")
