"""R2F+ sampling on SD3: per-object generations pushed into their boxes, fused into the base prompt's.

Park et al., ICLR 2025 (arXiv 2410.22376), as their code runs it (../shared/references/r2fplus.md):
1. Each object is drawn alone from its own prompt, with its own R2F alternation (`schedule`), its
   box moved to the image centre, and box guidance on the early steps; its latent after every step is
   kept. A mask of the object is made from the finished image (`masks`), and the kept latents and
   the mask are shifted from the centred box to the object's box.
2. The base prompt is drawn with every slot alternating by its object's schedule, the same box guidance
   with every box in place, and, after each of the early fusion steps, the latent inside each object's
   mask replaced by that object's latent of the same step (objects in plan order: later ones win where
   masks overlap).

Box guidance (`attention`) is the layout loss of Chen et al. (arXiv 2304.03373) on MMDiT's
image-to-text attention: per object, `scale * (attention outside its box / (1 + all of it))^2`, averaged
over objects, and a few gradient steps on the latent, each of size sigma_i^2.

Where the authors' code has a quirk we keep it when it shapes the numbers: the guidance at step i is
computed from the latent the step started from, and added to the stepped latent, so the step's own
prediction is made from the unguided latent (their order). Constants are theirs at 50 steps (box guidance
on 10 steps, 5 gradient steps each, loss scale 30, fusion on 20 steps, T5 at 256 tokens); at other step
counts the step counts scale like the R2F level table does. Everything goes through public diffusers
hooks: `set_attn_processor`, `joint_attention_kwargs`, `callback_on_step_end`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from rarecli.backbones.families import R2F_REFERENCE_STEPS
from rarecli.methods.r2f.sampler import Conditioning, encode, uses_cfg
from rarecli.methods.r2f_plus.attention import guide, probing, slot_tokens
from rarecli.methods.r2f_plus.geometry import Box, centred, shift_cells, shift_mask
from rarecli.methods.r2f_plus.schedule import fill, object_stops
from rarecli.methods.r2f_plus.schema import PlusObject, PlusPlan

if TYPE_CHECKING:
    import torch

    from rarecli.backbones.loading import LoadedPipeline
    from rarecli.methods.r2f_plus.masks import Masker



@dataclass(frozen=True)
class PlusSettings:
    steps: int = R2F_REFERENCE_STEPS
    guidance: float = 7.0
    box_steps: int = 10
    box_iterations: int = 5
    box_scale: float = 30.0
    fusion_steps: int = 20
    max_sequence_length: int = 256
    negative: str | None = None

    @classmethod
    def for_steps(cls, steps: int, guidance: float, negative: str | None = None, **overrides: Any) -> PlusSettings:
        """The authors' constants, their step counts scaled from 50 steps to `steps`."""

        def scaled(n: int) -> int:  # rounded half up, as the level table is (`schedule.stop_step`)
            return min(steps, (n * steps * 2 + R2F_REFERENCE_STEPS) // (2 * R2F_REFERENCE_STEPS))

        base = cls()
        return cls(
            steps=steps,
            guidance=guidance,
            box_steps=scaled(base.box_steps),
            fusion_steps=scaled(base.fusion_steps),
            negative=negative,
            **overrides,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "box_steps": self.box_steps,
            "box_iterations": self.box_iterations,
            "box_scale": self.box_scale,
            "fusion_steps": self.fusion_steps,
            "max_sequence_length": self.max_sequence_length,
        }


@dataclass
class FusionRecord:
    """One fusion step of the base generation, for checking: the latent before and after fusion, and
    each object's mask and latent that were pasted."""

    step: int
    before: torch.Tensor
    after: torch.Tensor
    pasted: list[tuple[torch.Tensor, torch.Tensor]]  # (mask, object latent) in paste order


@dataclass
class Trace:
    """What a run did: per template (`base`, `#1`, ...) and step, the phrase each slot received; the
    transformer's forward passes (a CFG batch is one) and backward passes; the box loss of each
    guidance update; and, when `keep_fusion` is set, every fusion step's latents."""

    phrases: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    # Per template, the prompt whose embeddings each sampling step's transformer call actually received.
    received: dict[str, list[str]] = field(default_factory=dict)
    forward: int = 0
    backward: int = 0
    box_losses: dict[str, list[float]] = field(default_factory=dict)
    keep_fusion: bool = False
    fusion: list[FusionRecord] = field(default_factory=list)
    object_latents: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # shifted, with keep_fusion


@dataclass
class ObjectImage:
    key: str
    image: Image.Image  # the object drawn alone, in its centred box
    centred_box: Box
    mask: Image.Image  # "L", at image size, in the object's own box (after the shift)
    mask_source: str  # how the mask was made (box, detector, or box after weak detection, with why)


@dataclass
class PlusImage:
    image: Image.Image
    objects: list[ObjectImage]


# -- sampling --------------------------------------------------------------------------------------


def sample_template(
    loaded: LoadedPipeline,
    settings: PlusSettings,
    name: str,
    template: str,
    objects: Sequence[PlusObject],
    boxes: Mapping[str, Box],
    noise: torch.Tensor,
    *,
    fusion: Sequence[tuple[torch.Tensor, Sequence[torch.Tensor]]] = (),
    keep_latents: bool = False,
    trace: Trace | None = None,
) -> tuple[Image.Image, list[torch.Tensor]]:
    """One generation of `template`, its slots alternating by their objects' schedules, box guidance on
    the first `box_steps`, and `fusion` (mask, object latent per step) pasted on the first `fusion_steps`.
    Returns the image and, with `keep_latents`, the latent after every step (on the CPU)."""
    import torch

    trace = trace if trace is not None else Trace()
    pipe = loaded.pipe
    manager = loaded.manager
    steps = settings.steps
    cfg = uses_cfg(loaded, settings.guidance)
    by_key = {o.key: o for o in objects}
    stops = {o.key: object_stops(o, steps, "sd3") for o in objects}
    texts, received = [], []
    for i in range(steps):
        text, got = fill(template, by_key, i, stops)
        texts.append(text)
        received.append(got)
    trace.phrases[name] = received
    conds: dict[str, Conditioning] = {}
    with torch.no_grad():  # not inference_mode: box guidance backpropagates through these embeddings
        for text in texts:
            if text not in conds:
                conds[text] = encode(loaded, text, settings.negative, cfg, settings.max_sequence_length)
    spans = [
        slot_tokens(loaded, template, received[i], settings.max_sequence_length) for i in range(settings.box_steps)
    ]
    latents = (noise.unsqueeze(0) if noise.dim() == 3 else noise).to(manager.device, manager.torch_dtype)
    state = {"x": latents}
    kept: list[torch.Tensor] = []

    seen = trace.received.setdefault(name, [])
    losses = trace.box_losses.setdefault(name, [])

    def record(loss: float) -> None:
        trace.backward += 1
        losses.append(loss)

    def count(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        trace.forward += 1
        if kwargs.get("joint_attention_kwargs") is None:  # a sampling step, not a guidance update
            given = kwargs["encoder_hidden_states"]
            seen.append(next((t for t, c in conds.items() if torch.equal(c.prompt_embeds, given)), "?"))

    def on_step(pipeline: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        x = tensors["latents"]
        if i < settings.box_steps and boxes:
            sigma = float(pipe.scheduler.sigmas[i])
            guided = guide(
                loaded, state["x"], t, sigma, conds[texts[i]], spans[i], boxes,
                settings.box_iterations, settings.box_scale, record,
            )  # fmt: skip
            x = x + (guided - state["x"]).to(x.dtype)  # the step itself was predicted from the unguided latent
        if i < settings.fusion_steps and fusion:
            before = x
            for mask, latents_by_step in fusion:
                m = mask.to(x.device, x.dtype)
                x = x * (1 - m) + latents_by_step[i].to(x.device, x.dtype) * m
            if trace.keep_fusion:
                pasted = [(mask, latents_by_step[i]) for mask, latents_by_step in fusion]
                trace.fusion.append(FusionRecord(i, before.detach().cpu(), x.detach().cpu(), pasted))
        state["x"] = x
        if keep_latents:
            kept.append(x.detach().to("cpu", copy=True))
        if i + 1 < steps:
            cond = conds[texts[i + 1]]
            tensors["prompt_embeds"] = cond.prompt_embeds
            tensors["pooled_prompt_embeds"] = cond.pooled
        tensors["latents"] = x
        return tensors

    f = pipe.vae_scale_factor
    hook = pipe.transformer.register_forward_pre_hook(count, with_kwargs=True)
    try:
        with probing(pipe.transformer):
            result = pipe(
                latents=latents,
                num_inference_steps=steps,
                guidance_scale=settings.guidance,
                height=latents.shape[-2] * f,
                width=latents.shape[-1] * f,
                **conds[texts[0]].pipeline_kwargs(cfg),
                output_type="pil",
                callback_on_step_end=on_step,
                callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "pooled_prompt_embeds"],
            )
    finally:
        hook.remove()
    return result.images[0], kept


def noises(seed: int, shape: tuple[int, ...], objects: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The base generation's noise (the same as plain sampling's for `seed`), then one per object,
    drawn in turn from the one CPU generator."""
    import torch

    generator = torch.Generator("cpu").manual_seed(int(seed))
    first = torch.randn(shape, generator=generator, dtype=torch.float32)
    return first, [torch.randn(shape, generator=generator, dtype=torch.float32) for _ in range(objects)]


def sample_plus(
    loaded: LoadedPipeline,
    plan: PlusPlan,
    seed: int,
    shape: tuple[int, ...],
    settings: PlusSettings,
    masker: Masker,
    trace: Trace | None = None,
) -> PlusImage:
    """The R2F+ image of `plan` from `seed`, with each object's own image and mask."""
    import torch

    trace = trace if trace is not None else Trace()
    base_noise, object_noise = noises(seed, shape, len(plan.objects))
    rows, cols = shape[-2:]
    fusion: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
    objects: list[ObjectImage] = []
    if settings.fusion_steps > 0:  # without fusion the objects' own generations would serve nothing
        for obj, noise in zip(plan.objects, object_noise, strict=True):
            box = centred(obj.box)
            image, kept = sample_template(
                loaded, settings, obj.key, obj.prompt, [obj], {obj.key: box}, noise, keep_latents=True, trace=trace
            )
            made = masker.mask(image, obj, box, (rows, cols))
            down, right = shift_cells(obj.box, rows, cols)
            latent_mask = shift_mask(made.latent, down, right)
            moved = [torch.roll(z, (down, right), dims=(-2, -1)) for z in kept]
            fusion.append((latent_mask, moved))
            if trace.keep_fusion:
                trace.object_latents[obj.key] = moved
            image_mask = shift_mask(made.image, *shift_cells(obj.box, *made.image.shape[-2:]))
            objects.append(ObjectImage(obj.key, image, box, _to_l(image_mask), made.source))
    boxes = {o.key: o.box for o in plan.objects}
    image, _ = sample_template(
        loaded, settings, "base", plan.base_prompt, plan.objects, boxes, base_noise, fusion=fusion, trace=trace
    )
    return PlusImage(image, objects)


def _to_l(mask: torch.Tensor) -> Image.Image:
    import torch

    return Image.fromarray((mask.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(), mode="L")
