"""Load a diffusers pipeline by Hugging Face id, local folder or embedded name; one load per process.

Hub models go through diffusers/huggingface_hub as usual, so HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and
HF_TOKEN apply. Embedded backbones are built once and then take the same `from_pretrained` path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RemoteEntryNotFoundError

from rarecli.backbones.checkpoints import Checkpoint, identify
from rarecli.backbones.families import DEFAULT_DTYPE, DtypePolicy, find_family, pipelines_of
from rarecli.backbones.registry import EMBEDDED, ensure_built
from rarecli.backbones.twins import twin_of
from rarecli.errors import InputError, RareError, explain
from rarecli.log import warn
from rarecli.runtime.cache import MODEL_CACHE
from rarecli.runtime.device import DeviceManager
from rarecli.runtime.quiet import quiet_hub, quiet_libraries


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from, as recorded in output metadata."""

    name: str  # what the user passed
    source: str  # "embedded", "local" or "hub"
    location: str  # folder path, or hub id
    revision: str | None = None
    # `repo@revision` when the weights are random, in the architecture of that model (a twin).
    twin_of: str | None = None

    def to_meta(self) -> dict[str, Any]:
        meta = {"model": self.name, "model_source": self.source, "model_revision": self.revision}
        if self.twin_of is not None:
            meta["model_weights"] = f"random: architecture twin of {self.twin_of}, not the real model"
        return meta


def resolve(model: str, revision: str | None = None, kind: str = "pipeline") -> ModelRef:
    """Decide whether `model` is embedded, a local folder or a Hub id. Does not load or download."""

    if model in EMBEDDED:
        entry = EMBEDDED[model]
        if entry.kind != kind:
            raise InputError(
                f"{model} is a {entry.kind} model, not a {kind}",
                hint="`rare models` lists what each embedded backbone is",
            )
        folder = ensure_built(entry)  # a recipe's copy is verified there; packaged weights are checked here
        if entry.packaged is not None and not entry.built:
            raise RareError(
                f"{model}: its packaged weights are missing from {folder}",
                hint="rebuild them with `make toy-world` (toy-digits) or `make toy-shapes`, or reinstall rare",
            )
        return ModelRef(
            model, "embedded", str(folder), revision=entry.revision, twin_of=entry.twin.copies if entry.twin else None
        )
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")):
        if not path.is_dir():
            raise InputError(
                f"model folder not found: {model}",
                hint="pass a folder in the diffusers layout, a Hub id, or an embedded name",
            )
        marker = "model_index.json" if kind == "pipeline" else "config.json"
        if not (path / marker).is_file():
            raise InputError(
                f"{model} has no {marker}: not a {'diffusers pipeline' if kind == 'pipeline' else 'model'} folder"
            )
        twin = twin_of(path)  # a twin's folder copied elsewhere is still random weights
        copies = f"{twin['copies']['repo']}@{twin['copies']['revision']}" if twin else None
        return ModelRef(model, "local", str(path.resolve()), revision=None, twin_of=copies)
    if model.count("/") != 1:
        raise InputError(
            f"unknown model {model!r}",
            hint="use a Hub id like org/name, a local folder, or one of: " + ", ".join(EMBEDDED),
        )
    return ModelRef(model, "hub", model, revision=revision)


def hub_error(model: str, exc: BaseException) -> RareError:
    """What a failure to reach a Hub model means, the same for every command: not in the local cache and
    no Hub (offline, no network), gated, missing, or something else said in one line."""
    known = explain(exc)
    text = str(exc)
    offline = known is not None and "local Hugging Face cache" in known.message
    if offline or "cached" in text or "offline" in text or "connect" in text.lower() or "resolve" in text.lower():
        return RareError(
            f"{model} is not in the local Hugging Face cache and the Hub cannot be reached",
            hint="download it once while online (HF_HUB_OFFLINE unset), pass a local folder, or use an "
            "embedded model (`rare models`)",
        )
    if known is not None:
        return known
    return RareError(
        f"cannot load {model} from the Hub: {text.splitlines()[0] if text else exc!r}",
        hint="check the model id and your network; HF_TOKEN for gated models",
    )


def _download(ref: ModelRef) -> ModelRef:
    """Fetch (or find in the HF cache) a Hub pipeline; records the exact commit used."""
    from diffusers import DiffusionPipeline

    try:
        folder = DiffusionPipeline.download(ref.location, revision=ref.revision)
    except Exception as exc:
        raise hub_error(ref.location, exc) from exc
    commit = Path(folder).name if Path(folder).parent.name == "snapshots" else ref.revision
    return ModelRef(ref.name, "hub", str(folder), revision=commit)


_WARNED_LONG: set[tuple[str, str]] = set()


@dataclass
class LoadedPipeline:
    pipe: Any
    ref: ModelRef
    manager: DeviceManager
    # Each module component's dtype after the family's precision policy was applied (the VAE in fp32
    # under fp16 for SD/SDXL, ...), recorded in everything the pipeline makes.
    precision: dict[str, str] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """What an image's metadata says of the model and how it ran: source, revision, device, dtype."""
        return {
            **self.ref.to_meta(),
            "device": self.manager.device,
            "dtype": self.manager.dtype,
            "component_dtypes": dict(self.precision),
        }

    @property
    def family(self) -> str:
        return type(self.pipe).__name__

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The known checkpoint this is (`rarecli.backbones.checkpoints`), by id or its denoiser's config."""
        family = find_family(self.family)
        denoiser = getattr(self.pipe, family.denoiser if family is not None else "unet", None)
        config = dict(getattr(denoiser, "config", {}) or {})
        name = (self.ref.twin_of or self.ref.location).split("@")[0]
        return identify(name, self.family, config)

    def sampling_defaults(self) -> tuple[int, float]:
        """Plain sampling's steps and guidance: the known checkpoint's, else its family's."""
        family = find_family(self.family)
        checkpoint = self.checkpoint
        steps = (checkpoint and checkpoint.steps) or (family.steps if family else 50)
        guidance = checkpoint.guidance if checkpoint and checkpoint.guidance is not None else None
        if guidance is None:
            guidance = family.guidance if family else 7.5
        return steps, guidance

    @property
    def has_t5(self) -> bool | None:
        """Whether the T5 encoder is loaded, for a family where it is optional (else None)."""
        family = find_family(self.family)
        if family is None or not family.optional_t5:
            return None
        return getattr(self.pipe, family.optional_t5[0], None) is not None

    @functools.cached_property
    def unet_dtype(self) -> Any:
        """The UNet's weight dtype, read once: diffusers' `unet.dtype` walks its parameters at every call,
        and SeedSelect asks at every denoising step of every iteration."""
        return self.pipe.unet.dtype

    def check_prompt_length(self, prompt: str) -> None:
        """Warn (once per prompt) when the text encoder will read only the start of `prompt`: pipelines
        truncate to the tokenizer's length (77 CLIP tokens) without a word."""
        tokenizer = getattr(self.pipe, "tokenizer", None)
        limit = getattr(tokenizer, "model_max_length", None)
        if tokenizer is None or not limit or (self.ref.location, prompt) in _WARNED_LONG:
            return
        count = len(tokenizer(prompt, truncation=False).input_ids)
        if count > limit:
            _WARNED_LONG.add((self.ref.location, prompt))
            warn(f"the prompt is {count} tokens long; the text encoder reads the first {limit}, the rest is ignored")


def load_pipeline(
    model: str,
    manager: DeviceManager,
    revision: str | None = None,
    families: Collection[str] | None = None,
    purpose: str = "this command",
    t5: bool | None = None,
) -> LoadedPipeline:
    """Load (once per process) and place a pipeline; checks its class is one `purpose` supports
    (`families`: pipeline classes or family keys, e.g. a method's `MethodSpec.families`).

    `t5`: for a family whose T5 encoder is optional (SD3), False loads without it (4.7 B parameters
    saved; the pipeline then feeds zeros in its place, diffusers' documented way), True requires it,
    None takes the model as saved."""
    if families is not None:
        families = pipelines_of(families)
    entry = EMBEDDED.get(model)
    if families is not None and entry is not None and entry.kind == "pipeline" and entry.pipeline_class not in families:
        raise _wrong_family(model, entry.pipeline_class, families, purpose)  # before a twin is built
    ref = resolve(model, revision)
    index = _read_config(ref, "model_index.json") or {}
    declared = index.get("_class_name")
    if families is not None and declared is not None and declared not in families:
        raise _wrong_family(model, declared, families, purpose)  # from model_index.json, before any weights
    # Components saved as None (`[null, null]` in model_index.json: an SD3 folder saved without T5) are
    # passed as None: diffusers would otherwise refuse the folder for a missing component.
    saved_without = tuple(k for k, v in index.items() if v == [None, None])
    drop = tuple(dict.fromkeys(saved_without + _t5_choice(model, index, t5)))
    policy = family_dtype(declared)
    manager = manager.for_family(policy.auto)
    key = ("pipeline", ref.source, ref.location, ref.revision, manager.key, drop)

    def load() -> LoadedPipeline:
        from diffusers import DiffusionPipeline

        with quiet_libraries():
            resolved = _download(ref) if ref.source == "hub" else ref
            try:
                pipe = DiffusionPipeline.from_pretrained(
                    resolved.location, torch_dtype=manager.torch_dtype, **dict.fromkeys(drop)
                )
            except Exception as exc:
                if ref.source != "embedded":
                    raise
                # A copy built before completion markers existed, damaged since (truncated weights).
                first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
                raise RareError(
                    f"{model}: its built copy at {resolved.location} cannot be loaded ({first})",
                    hint=f"delete {resolved.location}; rare builds it again on the next run",
                ) from None
            pipe.set_progress_bar_config(disable=True)
            _freeze(pipe)
            # The class is known for sure only now (a folder may lack model_index.json's _class_name).
            precision = manager.place(pipe, family_dtype(type(pipe).__name__).fp32_under_fp16)
        return LoadedPipeline(pipe, resolved, manager, precision)

    loaded = MODEL_CACHE.get(key, load)
    if families is not None and loaded.family not in families:
        raise _wrong_family(model, loaded.family, families, purpose)
    return loaded


def declared_pipeline_class(model: str, revision: str | None = None) -> str | None:
    """The pipeline class a model says it is (model_index.json), read before any weights load or any
    embedded backbone is built; None when it does not say."""
    entry = EMBEDDED.get(model)
    if entry is not None and entry.kind == "pipeline":
        return entry.pipeline_class
    index = _read_config(resolve(model, revision), "model_index.json") or {}
    declared = index.get("_class_name")
    return str(declared) if declared else None


def family_dtype(pipeline_class: str | None) -> DtypePolicy:
    """The precision policy of a pipeline class (an unknown class: the default one, nothing in fp32)."""
    family = find_family(str(pipeline_class)) if pipeline_class else None
    return family.dtype if family is not None else DEFAULT_DTYPE


def _t5_choice(model: str, index: dict[str, Any], t5: bool | None) -> tuple[str, ...]:
    """The components to load as None for the --t5 / --no-t5 choice."""
    if t5 is None:
        return ()
    family = find_family(str(index.get("_class_name")))
    slots = family.optional_t5 if family is not None else ()
    if not slots:
        raise InputError(
            f"--{'' if t5 else 'no-'}t5 applies to models with an optional T5 encoder (SD3); {model} is a "
            f"{index.get('_class_name')}",
            hint="leave the option out for this model",
        )
    saved = index.get(slots[0])
    has_t5 = isinstance(saved, list) and saved[:1] != [None]
    if t5 and not has_t5:
        raise InputError(f"{model} was saved without its T5 encoder ({slots[0]}); --t5 needs it", hint="use --no-t5")
    return () if t5 else slots


def _freeze(pipe: Any) -> None:
    """rare never trains a pipeline's weights. SeedSelect back-propagates through the UNet and the VAE
    to the seed; with the weights left trainable, every iteration would also compute and keep a
    gradient for each weight (about 3.5 GB for SD2.1's UNet in fp32), which nothing reads."""
    import torch

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)


def _wrong_family(model: str, family: str, families: Collection[str], purpose: str) -> RareError:
    return RareError(
        f"{model} is a {family}; {purpose} needs one of: {', '.join(sorted(families))}",
        hint="choose another --model",
    )


def _read_config(ref: ModelRef, name: str) -> dict[str, Any] | None:
    """A JSON config of the model (None when the file is not part of it); a Hub model that cannot be
    reached is a RareError at the first file, so no command waits on the network file after file."""
    if ref.source == "hub":
        try:
            # A short wait for the Hub's answer: without a network each file would otherwise cost minutes.
            with quiet_hub():
                path = hf_hub_download(ref.location, name, revision=ref.revision, etag_timeout=5)
        except LocalEntryNotFoundError as exc:  # (an EntryNotFoundError too): not cached, and no Hub to ask
            raise hub_error(ref.location, exc) from exc
        except (EntryNotFoundError, RemoteEntryNotFoundError):  # the repository has no such file
            return None
        except Exception as exc:  # unreachable, gated, no such repository: said once
            raise hub_error(ref.location, exc) from exc
    else:
        path = Path(ref.location) / name
        if not path.is_file():
            return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def latent_shape(
    model: str | ModelRef, height: int | None = None, width: int | None = None, revision: str | None = None
) -> tuple[int, ...]:
    """The initial-noise (seed) shape for one image, (channels, height/f, width/f), read from the
    configs alone (no weights are loaded). Default size is the model's native one."""
    ref = model if isinstance(model, ModelRef) else resolve(model, revision)
    index = _read_config(ref, "model_index.json") or {}
    family = find_family(str(index.get("_class_name")))
    folders = (family.denoiser,) if family is not None else ("unet", "transformer")
    denoiser = next((c for c in (_read_config(ref, f"{f}/config.json") for f in folders) if c is not None), None)
    vae = _read_config(ref, "vae/config.json")
    if denoiser is None or vae is None:
        raise RareError(f"{ref.name}: no unet/transformer or vae config: not a latent diffusion pipeline")
    f = 2 ** (len(vae["block_out_channels"]) - 1)
    embedded = EMBEDDED.get(ref.name) if ref.source == "embedded" else None
    if "sample_size" in denoiser:
        default = denoiser["sample_size"] * f
    else:  # FLUX: the family's native size (an embedded tiny one says its own)
        default = (embedded.native_size if embedded is not None else None) or (family.native_size if family else 1024)
    h, w = height or default, width or default
    # Packed latents (FLUX) pair up latent rows and columns: the image side is a multiple of 2f.
    step = 2 * f if family is not None and family.packed_latents else f
    if h % step or w % step:
        raise InputError(f"height and width must be multiples of {step} for {ref.name} (got {h}x{w})")
    channels = vae["latent_channels"] if family is not None and family.packed_latents else denoiser["in_channels"]
    return (channels, h // f, w // f)
