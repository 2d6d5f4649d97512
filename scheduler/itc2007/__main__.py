"""`python -m scheduler.itc2007 INSTANCE.ctt OUT.sol [--time-limit S] [--seed N]`."""

from __future__ import annotations

import argparse

from scheduler.itc2007.solver import run_itc2007


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler.itc2007")
    parser.add_argument("instance")
    parser.add_argument("out")
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    return run_itc2007(args.instance, args.out, args.time_limit, args.seed)


if __name__ == "__main__":
    raise SystemExit(main())
