"""`torchstarter compare A B`: two evaluated experiments, metric by metric, on the same
examples (see report/compare.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from tabulate import tabulate

from torchstarter.cli.flags import flag, restore_flag
from torchstarter.errors import UserError

SHOWN_FLIPS = 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="is experiment B better than A? paired tests on the same examples",
        description="Compare two experiments evaluated on the same split: the params that "
                    "differ, each metric with the difference B - A and a paired-bootstrap "
                    "95%% interval of it, McNemar's test, per-class differences and the "
                    "examples whose correctness flipped. Run evaluate on both first.")
    p.add_argument("a", type=Path, metavar="A", help="experiment folder (the baseline)")
    p.add_argument("b", type=Path, metavar="B", help="experiment folder (the challenger)")
    flag(p, "split", default="test", help="split both were evaluated on (default: test)")
    restore_flag(p, "best", "weights both were evaluated with: best (default) or last")
    flag(p, "resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    flag(p, "seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    from torchstarter.report.compare import compare

    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be 0 or more")
    if args.resamples < 100:
        raise UserError(f"--resamples {args.resamples}: use at least 100 (1000 is usual)")
    if args.restore not in ("best", "last"):
        raise UserError(f"--restore {args.restore}: compare reads the predictions of best or "
                        f"last; evaluate other weights into their own experiment folder")
    result = compare(args.a, args.b, args.split, args.restore, args.resamples, args.seed)
    if args.json:
        out = asdict(result)
        out.update(a=str(result.a), b=str(result.b),
                   mcnemar=asdict(result.mcnemar) if result.mcnemar else None)
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"A = {result.a}\nB = {result.b}\n{result.split} split: {result.examples} "
          f"{result.unit}s, the same in both")
    if result.params:
        print("\nparams that differ:")
        print(tabulate([{"param": k, "A": json.dumps(va), "B": json.dumps(vb)}
                        for k, va, vb in result.params], headers="keys"))
    print()
    print(tabulate([{"metric": m["metric"], "A": m["a"], "B": m["b"], "B - A": m["difference"],
                     "95% CI of B - A": f"{m['low']:+.4f} to {m['high']:+.4f}"}
                    for m in result.metrics], headers="keys", floatfmt=".4f"))
    print(f"paired bootstrap: {result.resamples} resamples of the {result.examples} "
          f"{result.unit}s, seed {result.seed}; an interval without 0 is a difference the "
          f"examples support")
    test = result.mcnemar
    if test is not None:
        print(f"McNemar ({test.method}) over {result.correct_unit}: right only in A "
              f"{test.only_a}, right only in B {test.only_b}, p = {test.p_value:.4g}")
    if result.per_class:
        print()
        print(tabulate(result.per_class, headers="keys", floatfmt=".4f"))
    for kind, label in (("fixed", "right in B, wrong in A"), ("broken", "wrong in B, right in A")):
        ids = result.flipped.get(kind, [])
        more = f" (first {SHOWN_FLIPS})" if len(ids) > SHOWN_FLIPS else ""
        print(f"\n{len(ids)} {result.unit}s {label}{more}" + (":" if ids else ""))
        for item in ids[:SHOWN_FLIPS]:
            print(f"  {item}")
    return 0
