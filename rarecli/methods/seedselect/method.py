"""SeedSelect and NAO-SeedSelect behind the method protocol: a request's images are optimised in
batches and yielded, each with its provenance and run record, as soon as its batch is done.

Batches hold up to 4 images (`batch_size`); on an out-of-memory error a batch is halved and retried.
Ctrl-C stops the optimisation: the batch in progress is rendered from the best seeds found so far and
yielded with `interrupted=True`, and nothing further is optimised.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from rarecli.errors import InputError
from rarecli.log import info, progress, progress_enabled, warn
from rarecli.methods.output import Provenance, settings_text
from rarecli.methods.protocol import Generated, MethodContext, Request
from rarecli.methods.seedselect.config import DEFAULT_INNER_STEPS, SeedSelectConfig
from rarecli.methods.seedselect.objective import OptimResult
from rarecli.methods.seedselect.references import describe_subset
from rarecli.methods.seedselect.session import ImagePlan, Session, prepare
from rarecli.methods.spec import MethodBase
from rarecli.runtime.device import is_out_of_memory

DEFAULT_BATCH = 4


class SeedSelect(MethodBase):
    """`seedselect` or `nao-seedselect` (one class, given its registry entry). Options: `SeedSelectOptions`
    / `NaoSeedSelectOptions`; `MethodContext.steps` is the inner DDIM steps and `guidance` the CFG (None:
    the method's default)."""

    def prepare(self, context: MethodContext) -> _PreparedSeedSelect:
        return _PreparedSeedSelect(self.name, replace(context, options=self.check(context.options)))


@dataclass
class _PreparedSeedSelect:
    name: str
    context: MethodContext

    def config(self, request: Request) -> SeedSelectConfig:
        """The job a request asks for: its seeds must be consecutive (image i uses seed seeds[0] + i,
        and the i-th bootstrap resample of the references)."""
        seeds = list(request.seeds)
        if not seeds or seeds != list(range(seeds[0], seeds[0] + len(seeds))):
            raise InputError(f"{self.name} draws consecutive seeds (seed, seed+1, ...); got {seeds}")
        context = self.context
        return SeedSelectConfig(
            prompt=request.prompt,
            refs=request.refs,
            method=self.name,
            model=context.model,
            revision=context.revision,
            inner_steps=context.steps or DEFAULT_INNER_STEPS,
            guidance=context.guidance,
            height=context.height,
            width=context.width,
            num_images=len(seeds),
            seed=seeds[0],
            options=context.options,  # checked once, in prepare
        )

    def generate(self, request: Request) -> Iterator[Generated]:
        config = self.config(request)
        session = prepare(config, self.context.manager)  # checks everything before loading anything
        wanted = request.wanted()
        plans = [session.plans[i] for i in wanted]
        size = config.options.batch_size or min(DEFAULT_BATCH, max(len(plans), 1))
        queue = [plans[i : i + size] for i in range(0, len(plans), size)]
        while queue:
            batch = queue.pop(0)
            try:
                started = time.perf_counter()
                out = self._optimise(session, batch, request)
                images = session.render(out.best_seeds)
                seconds = time.perf_counter() - started
                checkpoints = {k: session.render(seeds) for k, seeds in out.snapshots.items()}
            except Exception as exc:
                if not is_out_of_memory(exc) or len(batch) == 1:
                    raise
                self.context.manager.free_memory()
                size = len(batch) // 2
                warn(f"out of GPU memory with {len(batch)} images per batch; retrying with {size}")
                remaining = batch + [plan for later in queue for plan in later]
                queue = [remaining[i : i + size] for i in range(0, len(remaining), size)]
                continue
            for j in range(len(batch)):
                made = self._generated(session, batch, out, j, images[j], seconds)
                made.checkpoints = {k: rendered[j] for k, rendered in checkpoints.items()}
                yield made
            if out.interrupted:
                return

    def _optimise(self, session: Session, batch: list[ImagePlan], request: Request) -> OptimResult:
        bars = progress_enabled()
        iters = session.iters
        label = f"{self.name} " + (
            f"image {batch[0].index + 1}" if len(batch) == 1 else f"images {batch[0].index + 1}-{batch[-1].index + 1}"
        )
        with progress(label, total=iters, status="") as bar:

            def report(it: int, terms: Any, seconds: float) -> None:
                status = f"loss {float(terms.total.detach().mean()):.4f}  {seconds:.2f}s/it"
                bar.advance(status=status)
                if not bars:  # logs and CI: one line per iteration instead of a bar
                    info(f"{label}: iteration {it + 1}/{iters} {status}")

            return session.optimise(batch, on_iteration=report, snapshot_at=request.snapshots)

    def _generated(
        self, session: Session, batch: list[ImagePlan], out: OptimResult, j: int, image: Any, seconds: float
    ) -> Generated:
        config, plan, best = session.config, batch[j], out.best[j]
        extra = {
            **({"prompt_given": config.prompt} if config.prompt != session.prompt else {}),
            "start": plan.start_meta,
            "refs": describe_subset(session.refs, plan.subset),
            "loss": best,
            "initial_loss": out.initial[j],
            "iterations": out.iterations,
            "interrupted": out.interrupted,
        }
        # SeedSelect renders with its own DDIM loop, whatever scheduler the pipeline ships.
        settings = settings_text(
            "DDIM", config.inner_steps, session.settings["guidance"], plan.seed, config.model, Method=config.method
        )
        provenance = Provenance(
            command=self.context.command,
            method=config.method,
            prompt=session.prompt,
            seed=plan.seed,
            model=session.loaded.meta(),
            hyper=session.settings,
            extra=extra,
            settings=settings,
        )
        spi = out.seconds_per_iteration
        run_record = {
            "all_refs": [r.to_meta() for r in session.refs],
            "loss_curve": out.curve[j],
            "seconds_per_iteration": spi,
            "iteration_seconds": out.iteration_seconds,
            "setup_seconds": session.setup_seconds,
            "setup_phases": session.setup_phases,
            "batch": {"size": len(batch), "images": [p.index for p in batch], "seconds": seconds},
            "peak_memory": out.peak_memory,
            "checkpointing": out.extra.get("checkpointing"),
            "stopped_early": out.stopped_early,
            "stopped_non_finite": None if out.non_finite_at is None else f"non-finite loss at iteration {out.non_finite_at + 1}",
        }
        info(
            f"image {plan.index + 1}: loss {out.initial[j]['total']:.4f} -> {best['total']:.4f} "
            f"(best at iteration {best['iteration'] + 1}/{out.iterations}), "
            f"{spi:.2f} s/iteration, peak memory {format_bytes(out.peak_memory.get('bytes'))}"
            + (" [interrupted]" if out.interrupted else "")
        )
        return Generated(
            plan.index,
            plan.seed,
            image,
            provenance,
            seed_tensor=out.best_seeds[j],
            run_record=run_record,
            interrupted=out.interrupted,
        )


def format_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
