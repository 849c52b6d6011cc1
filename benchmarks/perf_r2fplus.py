"""R2F+ cost next to R2F and plain sampling on the embedded tiny SD3, interleaved in one process.

Per image: seconds (text encoding included, as each method does it per image), and the transformer
passes it made: forward passes (one CFG batch is one) and backward passes (box guidance). R2F+ on a
plan of K objects makes K + 1 generations, each with `box_steps * box_iterations` guidance updates, so
it should cost about (K + 1) times plain sampling plus the guidance's forward and backward passes.
Runs are interleaved (plain, r2f, r2f-plus, plain, ...) so machine load affects all alike; read the
ratios. Pin OMP_NUM_THREADS for comparable figures.

    OMP_NUM_THREADS=2 python benchmarks/perf_r2fplus.py --steps 20 --reps 5 --out out/bench/perf_r2fplus.json

At real size (the SD3-medium twin; minutes per image on a CPU), one round, no warm-up, with peak RSS:

    python benchmarks/perf_r2fplus.py --model twin:sd3-medium --size 256 --steps 4 --reps 1 --no-warmup
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from _procfs import reset_peak_rss, status_kib  # beside this script (its folder is sys.path[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-sd3")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model's)")
    parser.add_argument("--no-warmup", action="store_true", help="keep the first round (long runs)")
    parser.add_argument("--out", type=Path, default=Path("out/bench/perf_r2fplus.json"))
    args = parser.parse_args()

    from rarecli.backbones.families import family_of
    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.llm.schema import Concept, Plan
    from rarecli.methods.r2f.sampler import encode_schedule, sample_r2f
    from rarecli.methods.r2f.schedule import build_schedule
    from rarecli.methods.r2f_plus.masks import BoxMasker
    from rarecli.methods.r2f_plus.sampler import PlusSettings, Trace, sample_plus
    from rarecli.methods.r2f_plus.schema import PlusObject, PlusPlan
    from rarecli.runtime.device import DeviceManager
    from rarecli.seeds.noise import noise_from_seed

    manager = DeviceManager("auto", "auto")
    loaded = load_pipeline(args.model, manager)
    guidance = family_of(loaded.family).guidance
    prompt = "a hairy frog next to a cube-shaped melon"
    r2f_plan = Plan(prompt, (Concept("hairy frog", "hairy dog", 5), Concept("cube-shaped melon", "cube-shaped box", 1)))
    plus_plan = PlusPlan(prompt, "#1 next to #2", (
        PlusObject("#1", "a hairy frog", "#1", ("a hairy animal",), (5,), (0.05, 0.3, 0.5, 0.85)),
        PlusObject("#2", "a cube-shaped melon", "#2", ("a cube-shaped object", "a cube-shaped fruit"), (1, 2),
                   (0.55, 0.4, 0.95, 0.8)),
    ))  # fmt: skip
    shape = latent_shape(loaded.ref, args.size, args.size)
    noise = noise_from_seed(0, shape)
    settings = PlusSettings.for_steps(args.steps, guidance)
    calls = {"n": 0}
    hook = loaded.pipe.transformer.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))

    def plain_or_r2f(plan: Plan) -> dict[str, int]:
        schedule = build_schedule(plan, loaded.family, args.steps)
        sample_r2f(loaded, schedule, encode_schedule(loaded, schedule, guidance), noise, guidance)
        return {"backward": 0}

    def plus() -> dict[str, int]:
        trace = Trace()
        sample_plus(loaded, plus_plan, 0, shape, settings, BoxMasker(), trace)
        return {"backward": trace.backward}

    runs = {"plain": lambda: plain_or_r2f(Plan(prompt)), "r2f": lambda: plain_or_r2f(r2f_plan), "r2f-plus": plus}
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    passes: dict[str, dict[str, int]] = {}
    peak_gib: dict[str, float | None] = {}
    first = 0 if args.no_warmup else 1  # by default the first round warms up and is dropped
    for rep in range(args.reps + first):
        for name, run in runs.items():
            calls["n"] = 0
            measured = reset_peak_rss()
            with manager.timed() as t:
                counted = run()
            if rep >= first:
                seconds[name].append(t["seconds"])
            passes[name] = {"forward": calls["n"], **counted}
            peak = status_kib("VmHWM") if measured else None
            peak_gib[name] = round(peak / 2**20, 2) if peak is not None else None
    hook.remove()
    k = len(plus_plan.objects)
    result = {
        "model": args.model,
        "device": manager.device,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "steps": args.steps,
        "size": args.size,
        "latent_shape": list(shape),
        "reps": args.reps,
        "warmup_dropped": not args.no_warmup,
        "objects": k,
        "r2f_plus_settings": settings.to_json(),
        "seconds_per_image_median": {name: statistics.median(v) for name, v in seconds.items()},
        "transformer_passes_per_image": passes,
        "peak_rss_gib": peak_gib,  # the process's peak during each method's last image, weights included
        # What the design says R2F+ costs: K + 1 generations, each with its guidance updates.
        "r2f_plus_expected_passes": {
            "forward": (k + 1) * (args.steps + settings.box_steps * settings.box_iterations),
            "backward": (k + 1) * settings.box_steps * settings.box_iterations,
        },
    }
    median = result["seconds_per_image_median"]
    result["ratio_r2f_plus_over_plain"] = median["r2f-plus"] / median["plain"]
    result["ratio_r2f_plus_over_r2f"] = median["r2f-plus"] / median["r2f"]
    result["ratio_r2f_over_plain"] = median["r2f"] / median["plain"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
