"""Benchmarks: `make bench` (or `python -m bench.asr --model PATH`); results in bench/results/."""
