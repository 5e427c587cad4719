"""Benchmarks (``make bench``): each measures its baseline in the same run (see bench.md)."""
