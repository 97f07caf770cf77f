"""Regenerate the README's PTQ and QAT tables: train, sweep PTQ, compare PTQ with QAT.

    python benchmarks/ptq_qat_tables.py [--out runs/tables] [--tasks reverse addition]

Runs, for each task: ``refq train`` (default config), ``refq ptq --sweep --sensitivity``, ``refq
qat --compare`` (400 steps), ``refq qat --lsq`` at W2A8, and QAT at W2A4 and W2A2; then prints
the two markdown tables and the extra QAT rows. About 15 minutes on 2 cores. Every number comes
from the JSON line the commands print (the same keys ``refq eval --json`` prints).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def refq(*args: str, log: Path) -> dict:
    """Run ``refq ARGS --json``, keep its output in ``log``, return its last-line JSON."""
    cmd = [sys.executable, "-m", "refq", *args, "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    log.write_text(out)
    return json.loads(out.strip().splitlines()[-1])


def layer_stats(row: dict) -> str:
    v = np.array(list(row["layer_sqnr_db"].values()))
    return f"{v.mean():.1f} / {v.min():.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="runs/tables")
    ap.add_argument("--tasks", nargs="+", default=["reverse", "addition"])
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, dict] = {}
    for t in args.tasks:
        ck = str(out / f"{t}.npz")
        r = {"train": refq("train", "--task", t, "--out", ck, log=out / f"train_{t}.log")}
        r["ptq"] = refq("ptq", ck, "--out", str(out / f"{t}_w8.npz"), "--sweep", "--sensitivity",
                        log=out / f"ptq_{t}.log")  # fmt: skip
        r["qat"] = refq("qat", ck, "--out", str(out / f"{t}_qat.npz"), "--weight-bits", "2",
                        "--compare", log=out / f"qat_{t}.log")  # fmt: skip
        r["lsq"] = refq("qat", ck, "--out", str(out / f"{t}_lsq.npz"), "--weight-bits", "2",
                        "--lsq", log=out / f"lsq_{t}.log")  # fmt: skip
        for a in ("4", "2"):
            r[f"w2a{a}"] = refq("qat", ck, "--out", str(out / f"{t}_w2a{a}.npz"), "--weight-bits",
                                "2", "--act-bits", a, log=out / f"w2a{a}_{t}.log")  # fmt: skip
        res[t] = r
        (out / "results.json").write_text(json.dumps(res, indent=1))

    print("| task | steps | training s | exact | token acc | bytes |")
    print("|---|---|---|---|---|---|")
    for t, r in res.items():
        tr = r["train"]
        print(f"| {t} | {tr['steps']} | {tr['train_seconds']:.0f} | {tr['exact_match']:.3f} | "
              f"{tr['token_accuracy']:.3f} | {tr['size_bytes']:,} |")  # fmt: skip
    print()
    head = " | ".join(f"{t}: exact / F1 | out SQNR | layer SQNR mean / min" for t in res)
    print(f"| configuration | {head} | bytes | smaller |")
    print("|---" * (1 + 3 * len(res) + 2) + "|")
    print("| float32 | " + " | ".join("1.000 / 1.000 | | " for _ in res) + " | 680,504 | 1.00x |")
    first = next(iter(res.values()))
    for i, row0 in enumerate(first["ptq"]["sweep"]):
        cells = []
        for r in res.values():
            row = r["ptq"]["sweep"][i]
            cells.append(f"{row['exact_match']:.3f} / {row['f1']:.3f} | "
                         f"{row['output_sqnr_db']:.1f} | {layer_stats(row)}")  # fmt: skip
        print(f"| {row0['config']} | " + " | ".join(cells) +
              f" | {row0['size_bytes']:,} | {row0['size_ratio']:.2f}x |")  # fmt: skip
    print()
    head = " | ".join(f"{t}: float | PTQ | QAT" for t in res)
    print(f"| weights / activations | {head} |")
    print("|---" * (1 + 3 * len(res)) + "|")
    n = len(first["qat"]["compare"])
    for i in range(n):
        c0 = first["qat"]["compare"][i]
        cells = [f"{r['qat']['compare'][i]['float']:.3f} | {r['qat']['compare'][i]['ptq']:.3f} | "
                 f"{r['qat']['compare'][i]['qat']:.3f}" for r in res.values()]  # fmt: skip
        print(f"| W{c0['weight_bits']}A{c0['act_bits']} | " + " | ".join(cells) + " |")
    for key, label in (("lsq", "W2A8 LSQ"), ("w2a4", "W2A4"), ("w2a2", "W2A2")):
        cells = [f"{r[key]['float']['exact_match']:.3f} | {r[key]['ptq']['exact_match']:.3f} | "
                 f"{r[key]['exact_match']:.3f}" for r in res.values()]  # fmt: skip
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
