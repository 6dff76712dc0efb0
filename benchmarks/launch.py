"""Start a hookline role for the bench: ``python -m benchmarks.launch <role> [args]``.

The same as ``hookline <role>``, plus one bench-only hook: with ``HOOKLINE_BENCH_CPROFILE=<path>``
the role runs under :mod:`cProfile` and writes its stats to ``<path>`` when it exits (the bench
stops roles with SIGTERM, which the roles turn into a clean shutdown). Production code knows
nothing of it. Sampling with py-spy, when installed, needs no hook: the bench attaches to the pid.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main() -> int:
    from hookline.cli import main as cli_main

    argv = sys.argv[1:]
    out = os.environ.get("HOOKLINE_BENCH_CPROFILE")
    if not out:
        return cli_main(argv)
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return cli_main(argv)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main())
