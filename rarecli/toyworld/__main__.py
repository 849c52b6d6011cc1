"""The toy world's tools, one entry: `python -m rarecli.toyworld TOOL [ARGS]` (`TOOL --help` for each).

- `build`: train the world from scikit-learn's digits (`make toy-world`);
- `evaluate`: measure plain sampling, SeedSelect, NAO-SeedSelect and R2F on it (`make eval-toy`);
- `side-by-side`: one picture of several output folders, a row each (`make demo`).
"""

from __future__ import annotations

import sys

from rarecli.toyworld import build, evaluate, side_by_side

TOOLS = {"build": build.main, "evaluate": evaluate.main, "side-by-side": side_by_side.main}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in TOOLS:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    return TOOLS[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
