"""Benchmarks (not run by CI's tests, except a smoke run with a tiny book). `python -m bench.crash`."""
