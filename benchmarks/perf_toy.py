"""How fast the toy-digits world is on this machine: what a seed-optimisation method pays per iteration.

Measures, on the CPU, side by side in one run:
- plain sampling of one image (20 DDIM steps, guidance 7.5);
- one denoising pass with gradients: UNet forward + backward at batch 2 (classifier-free guidance)
  with respect to the latent, weights frozen;
- a whole differentiable render: 20 guided DDIM steps, VAE decode, toy-clip image embedding, then
  backward to the seed (the backbone cost of one SeedSelect iteration, without its losses).

Writes JSON (median of repeats). Usage: python benchmarks/perf_toy.py --out out/bench/perf_toy.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench/perf_toy.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch
    from transformers import CLIPModel

    from rarecli.backbones.loading import latent_shape, load_pipeline
    from rarecli.methods.sample import sample
    from rarecli.runtime.device import DeviceManager
    from rarecli.seeds.noise import noise_from_seed
    from rarecli.toyworld import CLIP_DIR, CLIP_PREPROCESS, prompt_for

    torch.set_num_threads(args.threads)
    loaded = load_pipeline("toy-digits", DeviceManager("cpu", "fp32"))
    pipe = loaded.pipe
    shape = latent_shape(loaded.ref)
    prompt = prompt_for(7)
    noise = noise_from_seed(0, shape)
    unet, vae, scheduler = pipe.unet.requires_grad_(False), pipe.vae.requires_grad_(False), pipe.scheduler
    clip = CLIPModel.from_pretrained(CLIP_DIR).eval().requires_grad_(False)
    pre = json.loads((CLIP_DIR / CLIP_PREPROCESS).read_text(encoding="utf-8"))
    mean = torch.tensor(pre["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["image_std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        positive, negative = pipe.encode_prompt(prompt, "cpu", 1, True, "")
    states = torch.cat([negative, positive])

    def plain() -> None:
        sample(loaded, prompt, noise, steps=20, guidance=7.5)

    def one_pass() -> None:
        z = noise[None].clone().requires_grad_(True)
        t = torch.tensor(500)
        unet(torch.cat([z, z]), t, encoder_hidden_states=states).sample.sum().backward()

    def render_backward(steps: int = 20) -> None:
        z = noise[None].clone().requires_grad_(True)
        scheduler.set_timesteps(steps)
        lat = z
        for t in scheduler.timesteps:
            uncond, cond = unet(torch.cat([lat, lat]), t, encoder_hidden_states=states).sample.chunk(2)
            lat = scheduler.step(uncond + 7.5 * (cond - uncond), t, lat).prev_sample
        image = ((vae.decode(lat / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)
        clip.get_image_features(pixel_values=(image - mean) / std).pooler_output.sum().backward()

    result = {
        "device": "cpu",
        "threads": args.threads,
        "torch": torch.__version__,
        "seed_shape": list(shape),
        "plain_sampling_20_steps_seconds": _median_seconds(plain, args.repeats),
        "denoising_pass_with_grad_batch2_seconds": _median_seconds(one_pass, args.repeats * 4),
        "render_20_steps_decode_clip_backward_seconds": _median_seconds(render_backward, args.repeats),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
