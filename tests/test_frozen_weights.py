"""SeedSelect optimises the seed only: no weight of the pipeline or of CLIP may collect a gradient."""

from __future__ import annotations

from rarecli.methods.seedselect.config import SeedSelectConfig
from rarecli.methods.seedselect.session import prepare
from rarecli.toyworld import REFS_DIR


def test_an_iteration_leaves_no_gradient_on_any_weight(cpu):
    config = SeedSelectConfig(
        "a handwritten digit seven", REFS_DIR / "seven", model="toy-digits", iters=1, inner_steps=2, patience=None
    )
    session = prepare(config, cpu)
    out = session.optimise(session.plans[:1])
    assert out.iterations == 1 and out.best[0]["total"] <= out.initial[0]["total"]
    modules = {name: c for name, c in session.loaded.pipe.components.items() if hasattr(c, "parameters")}
    assert {"unet", "vae", "text_encoder"} <= set(modules)
    modules["clip"] = session.clip.model
    holding = {
        name: sum(p.grad is not None for p in module.parameters())
        for name, module in modules.items()
        if any(p.grad is not None or p.requires_grad for p in module.parameters())
    }
    assert holding == {}, f"weights that would collect gradients: {holding}"
