"""`make bench`: run every bench/bench_*.py module (or those named on the command line).

Each module has ``main(results: pathlib.Path) -> None`` and writes its own Markdown (and plots)
into ``bench/results/``. Figures are only compared with a baseline measured in the same run.
"""

import argparse
import importlib
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. delay")
    options = parser.parse_args()
    available = sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    names = options.names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    for name in names:
        started = time.perf_counter()
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bench.bench_{name}").main(results)
        print(f"== bench {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
