"""The toy world's tools, one entry: `python -m rarecli.toyworld TOOL [ARGS]` (`TOOL --help` for each).

- `build`: train the world from scikit-learn's digits (`make toy-world`);
- `evaluate`: measure plain sampling, SeedSelect, NAO-SeedSelect and R2F on it (`make eval-toy`);
- `augment-eval`: does `rare augment`'s data help a classifier on the rare digits (`make eval-toy-augment`);
- `side-by-side`: one picture of several output folders, a row each (`make demo`).

This module parses arguments and calls the library; stdout gets the paths written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rarecli.errors import InputError
from rarecli.paths import toy_shapes_dir
from rarecli.toyworld import WEIGHTS_DIR
from rarecli.toyworld.augment_eval import GENERATED, AugmentEval, run_augment_eval
from rarecli.toyworld.build import build
from rarecli.toyworld.evaluate import OPTIMISERS, EvalRun, run_evaluation
from rarecli.toyworld.hyper import ToyHyper
from rarecli.toyworld.judge import digit_caption
from rarecli.toyworld.shapes.build import build as build_shapes
from rarecli.toyworld.shapes.evaluate import evaluate as evaluate_shapes
from rarecli.toyworld.shapes.train import ShapesHyper
from rarecli.toyworld.side_by_side import compare
from rarecli.toyworld.train import say


def _digits(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rarecli.toyworld", description=__doc__.splitlines()[0])
    tools = parser.add_subparsers(dest="tool", required=True)

    b = tools.add_parser("build", help="train the toy world (make toy-world)")
    b.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    b.add_argument("--unet-steps", type=int, default=None)
    b.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (quick runs)")
    b.add_argument("--threads", type=int, default=1)

    e = tools.add_parser("evaluate", help="measure the methods on the toy world (make eval-toy)")
    e.add_argument("--out", type=Path, default=Path("out/toy-eval"))
    e.add_argument("--world", type=Path, default=None, help="a folder written by the build (default: packaged)")
    e.add_argument("--seeds", type=int, default=20)
    e.add_argument("--steps", type=int, default=20, help="denoising steps, also SeedSelect's inner steps")
    e.add_argument("--guidance", type=float, default=7.5)
    e.add_argument(
        "--methods",
        default=",".join(OPTIMISERS),
        help="comma-separated optimisers to run besides plain sampling (seedselect, nao-seedselect; '' for none)",
    )
    e.add_argument("--digits", default=None, help="comma-separated digits (default: all ten)")
    e.add_argument("--seedselect-iters", type=int, default=None, help="default: the CLI's (30)")
    e.add_argument("--nao-iters", type=int, default=None, help="default: the CLI's (5)")
    e.add_argument(
        "--r2f-levels",
        default="1,2,3,4,5",
        help="R2F visual-detail levels to run (rare prompt guided early by a toy-clip-chosen frequent digit; '' for none)",
    )
    e.add_argument("--threads", type=int, default=1)

    a = tools.add_parser("augment-eval", help="measure rare augment for recognition (make eval-toy-augment)")
    a.add_argument("--out", type=Path, default=Path("out/toy-augment"))
    a.add_argument("--k", default="20,100", help="comma-separated images added per rare digit")
    a.add_argument("--classifier-seeds", type=int, default=5)
    a.add_argument("--steps", type=int, default=10, help="denoising steps, also SeedSelect's inner steps")
    a.add_argument("--seedselect-iters", type=int, default=None, help="default: the CLI's (30)")
    a.add_argument("--nao-iters", type=int, default=None, help="default: the CLI's (5)")
    a.add_argument("--train-steps", type=int, default=600, help="classifier training steps (batches of 64)")
    a.add_argument("--rows", default=",".join(GENERATED), help="comma-separated generated rows to run")
    a.add_argument("--threads", type=int, default=1)

    sb = tools.add_parser("shapes-build", help="train the shapes world (make toy-shapes)")
    sb.add_argument("--out", type=Path, default=None, help="default: rarecli/toyworld/shapes-weights")
    sb.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (a quick look: 0.1)")
    sb.add_argument("--threads", type=int, default=2)
    se = tools.add_parser("shapes-eval", help="measure R2F, AAPB and R2F+ in the shapes world (make eval-toy-shapes)")
    se.add_argument("--out", type=Path, default=Path("out/toy-shapes-eval"))
    se.add_argument("--seeds", type=int, default=20)
    se.add_argument("--steps", type=int, default=28)
    se.add_argument("--no-two-object", action="store_true", help="leave out R2F+ on two-object prompts")

    s = tools.add_parser("side-by-side", help="compare output folders in one picture, a row each")
    s.add_argument("out", type=Path, help="the PNG to write (never overwritten)")
    s.add_argument("folders", type=Path, nargs="+", help="folders of PNGs, one row each, in this order")
    s.add_argument("--max-per-row", type=int, default=None)
    s.add_argument(
        "--toy-judge", action="store_true", help="caption each image with the digit the toy world's judge sees in it"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.tool == "build":
        hp = ToyHyper(threads=args.threads)
        for part in (hp.judge, hp.clip, hp.vae, hp.unet):
            part.steps = max(10, int(part.steps * args.scale))
        if args.unet_steps is not None:
            hp.unet.steps = args.unet_steps
        manifest = build(args.out, hp)
        say(f"built in {manifest['seconds']['total']} s")
        print(args.out)
        return 0
    if args.tool == "shapes-build":
        shp = ShapesHyper(threads=args.threads)
        for part in (shp.judge, shp.clip, shp.vae, shp.transformer):
            part.steps = max(10, int(part.steps * args.scale))
        out = args.out or toy_shapes_dir()
        manifest = build_shapes(out, shp)
        say(f"built in {manifest['seconds']['total']} s")
        print(out)
        return 0
    if args.tool == "shapes-eval":
        evaluate_shapes(args.out, seeds=args.seeds, steps=args.steps, two_object=not args.no_two_object)
        print(args.out / "toy-shapes-eval.json")
        return 0
    if args.tool == "evaluate":
        run = EvalRun(
            out=args.out,
            world=args.world,
            seeds=args.seeds,
            steps=args.steps,
            guidance=args.guidance,
            methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
            digits=_digits(args.digits) if args.digits else None,
            seedselect_iters=args.seedselect_iters,
            nao_iters=args.nao_iters,
            r2f_levels=_digits(args.r2f_levels),
            threads=args.threads,
        )
        try:
            paths = run_evaluation(run)
        except ValueError as exc:
            parser.error(str(exc))
        for path in paths:
            print(path)
        return 0
    if args.tool == "augment-eval":
        rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
        unknown = [r for r in rows if r not in GENERATED]
        if unknown:
            parser.error(f"unknown rows {unknown}; choose from {', '.join(GENERATED)}")
        evaluation = AugmentEval(
            out=args.out,
            ks=_digits(args.k),
            classifier_seeds=args.classifier_seeds,
            steps=args.steps,
            seedselect_iters=args.seedselect_iters,
            nao_iters=args.nao_iters,
            train_steps=args.train_steps,
            rows=rows,
            threads=args.threads,
        )
        for path in run_augment_eval(evaluation):
            print(path)
        return 0
    caption = digit_caption() if args.toy_judge else None
    try:
        path = compare(args.out, args.folders, args.max_per_row, caption)
    except InputError as exc:
        print(f"Error: {exc.message}" + (f"\nHint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 1
    except FileExistsError:
        print(f"Error: {args.out} exists (never overwritten)\nHint: remove it or pick another name", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
