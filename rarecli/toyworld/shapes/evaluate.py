"""`make eval-toy-shapes` (`python -m rarecli.toyworld shapes-eval`): R2F, AAPB and R2F+ against plain
sampling in the shapes world, through the product's own methods (the method registry).

Single objects: every method draws each prompt of the rare, absent and frequent pairs from the same seeds;
the judge reads colour and shape. Plain sampling is R2F's sampler with an empty plan (the target prompt at
every step), so the methods differ only in what guides. R2F runs at each visual-detail level with the
stand-in "a <colour> shape" (frequent by design: every red thing is captioned so), AAPB with the same
plan's anchor, adaptive and at a fixed gamma. Two objects: R2F+ with the two boxes of the training layout
against plain sampling of the same prompt; the judge reads each box.

Reported per method and group: colour, shape and both right, with 95% Wilson intervals, and diversity
(mean pairwise distance between a prompt's images, pixels in [0, 1], RMS).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rarecli.llm.schema import Concept, Plan
from rarecli.methods import registry
from rarecli.methods.driver import Driver
from rarecli.methods.protocol import MethodContext, Request
from rarecli.methods.r2f_plus.schema import PlusObject, PlusPlan
from rarecli.runtime.device import DeviceManager
from rarecli.toyworld.scoring import wilson
from rarecli.toyworld.shapes import data
from rarecli.toyworld.shapes.world import ShapesJudge

STEPS = 28
FIXED_GAMMA = 0.5
TWO_OBJECT = (
    (("red", "triangle"), ("blue", "circle")),
    (("yellow", "square"), ("red", "diamond")),
    (("green", "diamond"), ("yellow", "triangle")),
)


def groups() -> dict[str, list[tuple[str, str]]]:
    return {
        "rare": list(data.RARE),
        "absent": list(data.ABSENT),
        "frequent": [("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "diamond")],
    }


def r2f_plan(colour: str, shape: str, level: int | None, stand_in: str = "attribute") -> Any:
    """The plan of a single-object prompt. `stand_in` "attribute": R2F's pattern, the attribute kept and the
    noun generalised ("a red shape" for "a red triangle", as "a hairy animal" for "a hairy frog");
    "object": the shape kept and the colour dropped ("a triangle")."""
    prompt = data.specific(colour, shape)
    if level is None:
        return Plan(prompt)
    frequent = f"{colour} shape" if stand_in == "attribute" else shape
    return Plan(prompt, (Concept(f"{colour} {shape}", frequent, level),))


def plus_plan(left: tuple[str, str], right: tuple[str, str]) -> Any:
    objects = []
    for i, ((colour, shape), box) in enumerate(((left, data.LEFT_BOX), (right, data.RIGHT_BOX)), 1):
        rare = (colour, shape) not in data.FREQUENT
        objects.append(PlusObject(f"#{i}", data.specific(colour, shape), f"#{i}", (f"a {colour} shape",) if rare else (),
                                  (3,) if rare else (), box))  # fmt: skip
    return PlusPlan(data.pair_caption(left, right), "#1 and #2", tuple(objects))


def diversity(images: list[Any]) -> float:
    arrays = [np.asarray(im, dtype=np.float32) / 255.0 for im in images]
    pairs = list(itertools.combinations(arrays, 2))
    if not pairs:
        return 0.0
    return float(np.mean([np.sqrt(((a - b) ** 2).mean()) for a, b in pairs]))


def _rate(hits: int, n: int) -> dict[str, Any]:
    low, high = wilson(hits, n)
    return {"rate": round(hits / n, 4) if n else None, "ci95": [round(low, 4), round(high, 4)], "n": n}


def evaluate(out: Path, seeds: int = 20, steps: int = STEPS, two_object: bool = True) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    judge = ShapesJudge.load()
    manager = DeviceManager("cpu", "fp32")

    def prepared(name: str, **options: Any) -> Any:
        context = MethodContext("toy-shapes", None, manager, steps, None, options, command="toy-shapes-eval")
        return Driver.prepare(registry.get(name), context)

    r2f, aapb = prepared(registry.R2F.name), prepared(registry.AAPB.name)
    aapb_fixed = prepared(registry.AAPB.name, gamma=FIXED_GAMMA)
    methods: dict[str, tuple[Any, Any, str]] = {"plain": (r2f, None, "attribute")}
    methods.update({f"r2f_level_{k}": (r2f, k, "attribute") for k in range(1, 6)})
    methods.update({"aapb_adaptive": (aapb, 3, "attribute"), f"aapb_fixed_{FIXED_GAMMA:g}": (aapb_fixed, 3, "attribute")})
    # The other stand-in: the object kept, the attribute dropped.
    methods.update({"r2f_level_3_object_stand_in": (r2f, 3, "object"), "aapb_adaptive_object_anchor": (aapb, 3, "object")})
    seed_list = list(range(seeds))
    rows: dict[str, dict[str, Any]] = {}
    per_prompt: list[dict[str, Any]] = []
    for method, (prep, level, stand_in) in methods.items():
        started = time.perf_counter()
        counts = {g: {"colour": 0, "shape": 0, "both": 0, "n": 0, "diversity": []} for g in groups()}
        gammas: list[float] = []
        for group, pairs in groups().items():
            for colour, shape in pairs:
                plan = r2f_plan(colour, shape, level, stand_in)
                made = [d.made for d in prep.run(Request(plan.prompt, seed_list, plan=plan))]
                images = [m.image for m in made]
                readings = judge.read(images)
                c = sum(r.colour == colour for r in readings)
                s = sum(r.shape == shape for r in readings)
                b = sum(r.colour == colour and r.shape == shape for r in readings)
                for key, v in (("colour", c), ("shape", s), ("both", b), ("n", len(readings))):
                    counts[group][key] += v
                counts[group]["diversity"].append(diversity(images))
                drawn = {}
                for r in readings:
                    drawn[f"{r.colour} {r.shape}"] = drawn.get(f"{r.colour} {r.shape}", 0) + 1
                per_prompt.append({"method": method, "prompt": plan.prompt, "group": group, "both": b, "n": len(readings),
                                   "drawn": dict(sorted(drawn.items(), key=lambda kv: -kv[1]))})  # fmt: skip
                for m in made:
                    trace = (m.provenance.extra.get(registry.AAPB.name) or {}).get("gamma_trace")
                    if trace:
                        gammas.append(float(np.mean(trace)))
        rows[method] = {
            group: {
                **{k: _rate(v[k], v["n"]) for k in ("colour", "shape", "both")},
                "diversity": round(float(np.mean(v["diversity"])), 4),
            }
            for group, v in counts.items()
        }
        prompts = sum(len(pairs) for pairs in groups().values())
        rows[method]["seconds_per_image"] = round((time.perf_counter() - started) / (seeds * prompts), 3)
        if gammas:
            rows[method]["mean_gamma"] = round(float(np.mean(gammas)), 4)
    result: dict[str, Any] = {"steps": steps, "seeds": seeds, "guidance": 7.0, "single_object": rows,
                              "per_prompt": per_prompt}  # fmt: skip
    if two_object:
        result["two_object"] = _two_object(prepared, judge, seed_list)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy-shapes-eval.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "toy-shapes-eval.md").write_text(markdown(result), encoding="utf-8")
    return result


def _two_object(prepared: Any, judge: Any, seeds: list[int]) -> dict[str, Any]:
    r2f, plus = prepared(registry.R2F.name), prepared(registry.R2F_PLUS.name)
    out: dict[str, Any] = {}
    for method, prep in (("plain", r2f), ("r2f_plus", plus)):
        started = time.perf_counter()
        both = n = 0
        box_hits = {"colour": 0, "shape": 0}
        for left, right in TWO_OBJECT:
            plan = plus_plan(left, right)
            if method == "plain":
                made = [d.made for d in prep.run(Request(plan.prompt, seeds, plan=Plan(plan.prompt)))]
            else:
                made = [d.made for d in prep.run(Request(plan.prompt, seeds, plan=plan))]
            images = [m.image for m in made]
            left_r, right_r = judge.read(images, data.LEFT_BOX), judge.read(images, data.RIGHT_BOX)
            for lr, rr in zip(left_r, right_r, strict=True):
                ok = [(lr.colour, lr.shape) == left, (rr.colour, rr.shape) == right]
                both += all(ok)
                n += 1
                box_hits["colour"] += (lr.colour == left[0]) + (rr.colour == right[0])
                box_hits["shape"] += (lr.shape == left[1]) + (rr.shape == right[1])
        out[method] = {
            "both_objects_right": _rate(both, n),
            "box_colour": _rate(box_hits["colour"], 2 * n),
            "box_shape": _rate(box_hits["shape"], 2 * n),
            "seconds_per_image": round((time.perf_counter() - started) / n, 3),
        }
    return out


def _fmt(rate: dict[str, Any]) -> str:
    low, high = rate["ci95"]
    return f"{100 * rate['rate']:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"


def markdown(result: dict[str, Any]) -> str:
    lines = ["| method | rare: both right | absent: both right | frequent: both right | rare colour / shape | diversity (rare) | s / image |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for method, row in result["single_object"].items():
        rare = row["rare"]
        lines.append(
            f"| {method} | {_fmt(rare['both'])} | {_fmt(row['absent']['both'])} | {_fmt(row['frequent']['both'])} | "
            f"{100 * rare['colour']['rate']:.0f}% / {100 * rare['shape']['rate']:.0f}% | {rare['diversity']:.3f} | "
            f"{row['seconds_per_image']} |"
        )
    if "two_object" in result:
        lines += ["", "| two objects | both objects right | colour per box | shape per box | s / image |", "|---|---|---|---|---|"]
        for method, row in result["two_object"].items():
            lines.append(f"| {method} | {_fmt(row['both_objects_right'])} | {_fmt(row['box_colour'])} | "
                         f"{_fmt(row['box_shape'])} | {row['seconds_per_image']} |")  # fmt: skip
    return "\n".join(lines) + "\n"
