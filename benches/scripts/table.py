#!/usr/bin/env python3
"""Prints the criterion `verify` group as a Markdown table with the ratios PRODUCT.md names.

Reads target/criterion/verify/<impl>/<alg>/new/estimates.json (the latest run) and reports the
median time per verification, throughput, tessera/raw (throughput ratio: raw time / tessera
time) and tessera/jsonwebtoken.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion") / "verify"
algs = ["HS256", "RS256", "PS256", "ES256", "EdDSA"]
impls = ["tessera", "raw", "jsonwebtoken"]


def median_ns(impl, alg):
    path = root / impl / alg / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def rate(ns):
    per_s = 1e9 / ns
    return f"{per_s / 1e6:.2f} M/s" if per_s >= 1e6 else f"{per_s / 1e3:.1f} k/s"


def time(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


print("| alg | tessera | raw | jsonwebtoken | tessera / raw | tessera / jsonwebtoken |")
print("|---|---|---|---|---|---|")
for alg in algs:
    t, r, j = (median_ns(i, alg) for i in impls)
    cells = [f"{time(x)} ({rate(x)})" for x in (t, r, j)]
    print(f"| {alg} | {' | '.join(cells)} | {r / t:.3f} | {j / t:.2f}× |")
