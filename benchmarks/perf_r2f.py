"""R2F and AAPB sampling cost next to plain sampling, side by side in one process, on an embedded backbone.

R2F switches embeddings in the step callback and encodes each distinct prompt once, so per image it
should cost what plain sampling costs, plus one text encoding per extra prompt per plan. AAPB evaluates
the anchor beside CFG's two rows, one batch of 3 per step, so its sampling should cost about 1.5x plain
where the denoiser's time grows with the batch. Runs are interleaved (plain, r2f, aapb, plain, ...) so
machine load affects all alike; the ratios are what to read.

    python benchmarks/perf_r2f.py --model tiny-sd3 --steps 10 --reps 5 --out out/bench/perf_r2f.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sd3")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("out/bench/perf_r2f.json"))
    args = parser.parse_args()

    from rarecli.backbones.families import family_of
    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.llm.schema import Concept, Plan
    from rarecli.methods.aapb.method import anchor_and_target, encode_pair, sample_aapb
    from rarecli.methods.r2f.sampler import encode_schedule, sample_r2f, uses_cfg
    from rarecli.methods.r2f.schedule import build_schedule
    from rarecli.runtime.device import DeviceManager
    from rarecli.seeds.noise import noise_from_seed

    manager = DeviceManager("auto", "auto")
    loaded = load_pipeline(args.model, manager)
    guidance = family_of(loaded.family).guidance
    prompt = "a hairy frog next to a cube-shaped melon"
    plans = {
        "plain": Plan(prompt),
        "r2f": Plan(
            prompt, (Concept("hairy frog", "hairy dog", 5), Concept("cube-shaped melon", "cube-shaped box", 1))
        ),
    }
    noise = noise_from_seed(0, latent_shape(loaded.ref))
    times: dict[str, dict[str, list[float]]] = {k: {"encode": [], "sample": []} for k in (*plans, "aapb")}
    cfg = uses_cfg(loaded, guidance)
    for _ in range(args.reps + 1):  # the first round warms up and is dropped
        for name, plan in plans.items():
            schedule = build_schedule(plan, loaded.family, args.steps)
            with manager.timed() as enc:
                conds = encode_schedule(loaded, schedule, guidance)
            with manager.timed() as smp:
                sample_r2f(loaded, schedule, conds, noise, guidance)
            times[name]["encode"].append(enc["seconds"])
            times[name]["sample"].append(smp["seconds"])
        with manager.timed() as enc:
            target, anchor = encode_pair(loaded, *anchor_and_target(plans["r2f"]), None, cfg)
        with manager.timed() as smp:
            sample_aapb(loaded, target, anchor, noise, args.steps, guidance, None)
        times["aapb"]["encode"].append(enc["seconds"])
        times["aapb"]["sample"].append(smp["seconds"])
    result = {
        "model": args.model,
        "device": manager.device,
        "steps": args.steps,
        "reps": args.reps,
        **{
            f"{name}_{part}_s_median": statistics.median(values[1:])
            for name, parts in times.items()
            for part, values in parts.items()
        },
    }
    result["sample_ratio_r2f_over_plain"] = result["r2f_sample_s_median"] / result["plain_sample_s_median"]
    result["encode_ratio_r2f_over_plain"] = result["r2f_encode_s_median"] / result["plain_encode_s_median"]
    result["sample_ratio_aapb_over_plain"] = result["aapb_sample_s_median"] / result["plain_sample_s_median"]
    result["sample_ratio_aapb_over_r2f"] = result["aapb_sample_s_median"] / result["r2f_sample_s_median"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
