"""CoMT SFT vs CoT SFT on the same problems: training tokens and wall time to the same epochs.

The paper reports meta-thoughts of ~133 tokens against ~255 for chain-of-thought, hence ~50% fewer
training tokens and 65-70% less training time. This measures both at our scale:

- token counts for the whole split (tokenise both data sets, no training): cheap and exact;
- wall time of the real SFT recipe (fused loss, packing, checkpoints) on the first `--limit`
  problems, same model, tokenizer, schedule and epochs for both targets.

Both runs share one tokenizer (trained on both data sets) so that token counts compare like with
like. Problems are those both data sets kept (offline CoMT drops ~18% of GSM8K, see the report).

    python bench/sft_cost.py --limit 100 --out bench/results/comt_vs_cot_cpu
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from fastcomt.atomic_io import write_json_atomic, write_text_atomic
from fastcomt.comt.build import build_comt_data
from fastcomt.comt.records import ComtRecord, read_records
from fastcomt.config import config_from_dict, config_to_dict
from fastcomt.tokenizer import train_tokenizer
from fastcomt.train.config import SFTConfig
from fastcomt.train.sft import encode_records, run_sft

__all__ = ["compare_sft_cost", "main"]

CPU_MODEL = {
    "family": "qwen2",
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 176,
    "max_position_embeddings": 1024,
}
CPU_OPTIM = {"lr": 2e-3, "warmup_steps": 5, "row_tokens": 512, "tokens_per_step": 2048, "epochs": 1}


def _write_records(path: Path, records: list[ComtRecord]) -> None:
    write_text_atomic(path, "".join(json.dumps(r.to_dict()) + "\n" for r in records))


def _token_counts(tokenizer: Any, records: list[ComtRecord], row_tokens: int) -> dict[str, float]:
    examples, dropped = encode_records(tokenizer, records, row_tokens=row_tokens)
    total = sum(ex.num_tokens for ex in examples)
    response = sum(ex.num_loss_tokens + 1 for ex in examples)  # +1: the response's first token has no shift target
    return {
        "examples": len(examples),
        "dropped_too_long": dropped,
        "tokens": total,
        "response_tokens": response,
        "mean_tokens": round(total / max(len(examples), 1), 1),
        "mean_response_tokens": round(response / max(len(examples), 1), 1),
    }


def compare_sft_cost(
    *,
    work_dir: str | Path,
    source: str = "gsm8k",
    split: str = "train",
    limit: int = 100,
    epochs: int = 1,
    vocab_size: int = 2048,
    model: dict | None = None,
    optim: dict | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build both data sets, count tokens on all shared problems, train both on the first `limit`."""
    work = Path(work_dir)
    reports = {}
    for kind, mode in (("comt", "offline"), ("cot", "cot")):
        reports[kind] = build_comt_data(
            {"source": source, "split": split, "mode": mode, "output": str(work / f"{source}_{kind}_all.jsonl")}
        )
    comt_all = {r.id: r for r in read_records(work / f"{source}_comt_all.jsonl")}
    cot_all = [r for r in read_records(work / f"{source}_cot_all.jsonl") if r.id in comt_all]
    shared_ids = [r.id for r in cot_all]
    subset = shared_ids[:limit]

    tokenizer = train_tokenizer(
        [f"{r.question}\n{r.target}" for r in cot_all] + [comt_all[i].target for i in shared_ids],
        kind="bpe",
        vocab_size=vocab_size,
    )
    tokenizer_dir = work / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    optim_cfg = {**CPU_OPTIM, **(optim or {}), "epochs": epochs}
    full = {
        "comt": _token_counts(tokenizer, [comt_all[i] for i in shared_ids], optim_cfg["row_tokens"]),
        "cot": _token_counts(tokenizer, cot_all, optim_cfg["row_tokens"]),
    }

    runs = {}
    by_id = {"comt": comt_all, "cot": {r.id: r for r in cot_all}}
    for kind in ("comt", "cot"):
        data_path = work / f"{source}_{kind}_subset.jsonl"
        _write_records(data_path, [by_id[kind][i] for i in subset])
        cfg = config_from_dict(
            SFTConfig,
            {
                "output_dir": str(work / f"run_{kind}"),
                "seed": seed,
                "resume": False,
                "save_every": 0,
                "data": {"train": str(data_path)},
                "tokenizer": {"kind": "pretrained", "path": str(tokenizer_dir)},
                "model": {**CPU_MODEL, **(model or {})},
                "optim": optim_cfg,
            },
        )
        runs[kind] = run_sft(cfg)
    cfg_dict = config_to_dict(cfg)
    ratio = lambda a, b: round(a / b, 3) if b else None  # noqa: E731
    return {
        "source": f"{source}/{split}",
        "problems_in_split": reports["cot"]["kept_total"],
        "problems_kept_by_offline_comt": reports["comt"]["kept_total"],
        "offline_comt_rejections": reports["comt"]["filter_failures"],
        "shared_problems": len(shared_ids),
        "tokenizer": {"kind": "bpe", "vocab_size": len(tokenizer), "trained_on": "both data sets, shared problems"},
        "full_split_tokens_per_epoch": full,
        "full_split_ratio_comt_over_cot": {
            "tokens": ratio(full["comt"]["tokens"], full["cot"]["tokens"]),
            "response_tokens": ratio(full["comt"]["response_tokens"], full["cot"]["response_tokens"]),
        },
        "trained_subset": {"problems": len(subset), "epochs": epochs},
        "model": cfg_dict["model"],
        "optim": cfg_dict["optim"],
        "runs": {
            k: {
                key: v[key]
                for key in (
                    "steps",
                    "train_tokens",
                    "loss_tokens",
                    "train_seconds",
                    "tokens_per_second",
                    "final_loss",
                    "num_parameters",
                    "examples",
                )
            }
            for k, v in runs.items()
        },
        "subset_ratio_comt_over_cot": {
            "train_tokens": ratio(runs["comt"]["train_tokens"], runs["cot"]["train_tokens"]),
            "train_seconds": ratio(runs["comt"]["train_seconds"], runs["cot"]["train_seconds"]),
            "optimizer_steps": ratio(runs["comt"]["steps"], runs["cot"]["steps"]),
        },
    }


def _markdown(result: dict[str, Any]) -> str:
    full, runs = result["full_split_tokens_per_epoch"], result["runs"]
    sub = result["subset_ratio_comt_over_cot"]
    lines = [
        "# CoMT SFT vs CoT SFT: training tokens and time (CPU)",
        "",
        f"- date: {result['date']}",
        f"- machine: {result['machine']}",
        f"- command: `{result['command']}`",
        f"- data: {result['source']}; offline CoMT kept {result['problems_kept_by_offline_comt']} of "
        f"{result['problems_in_split']} problems (rejected: {result['offline_comt_rejections']}); both "
        f"targets on the same {result['shared_problems']} problems",
        f"- model: tiny Qwen2 {result['model']['num_layers']} layers, hidden {result['model']['hidden_size']}, "
        f"{runs['comt']['num_parameters']:,} parameters, BPE vocab {result['tokenizer']['vocab_size']} (one tokenizer for both)",
        "",
        "## Whole split, one epoch (tokenised, not trained)",
        "",
        "| target | examples | tokens | response tokens | mean tokens | mean response tokens |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, label in (("comt", "CoMT (offline meta-thought)"), ("cot", "CoT (gold solution)")):
        f = full[kind]
        lines.append(
            f"| {label} | {f['examples']} | {f['tokens']:,} | {f['response_tokens']:,} | {f['mean_tokens']} | {f['mean_response_tokens']} |"
        )
    r = result["full_split_ratio_comt_over_cot"]
    lines += [
        "",
        f"CoMT / CoT: {r['tokens']} of the tokens, {r['response_tokens']} of the response tokens.",
        "",
        f"## Trained: first {result['trained_subset']['problems']} shared problems, {result['trained_subset']['epochs']} epoch(s), same schedule",
        "",
        "| target | optimizer steps | tokens | response tokens | seconds | tokens/s | final loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, label in (("comt", "CoMT"), ("cot", "CoT")):
        x = runs[kind]
        lines.append(
            f"| {label} | {x['steps']} | {x['train_tokens']:,} | {x['loss_tokens']:,} | {x['train_seconds']} | {x['tokens_per_second']} | {x['final_loss']:.3f} |"
        )
    lines += [
        "",
        f"CoMT / CoT: {sub['train_tokens']} of the tokens, {sub['train_seconds']} of the wall time, "
        f"{sub['optimizer_steps']} of the optimizer steps.",
        "",
        result["notes"],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="gsm8k")
    parser.add_argument("--limit", type=int, default=100, help="problems trained on (token counts use all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--work-dir", default="runs/sft_cost")
    parser.add_argument("--out", default="bench/results/comt_vs_cot_cpu", help="writes OUT.json and OUT.md")
    parser.add_argument("--notes", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the shared 2-core machine: keep the measurement to one core
    result = compare_sft_cost(
        work_dir=args.work_dir, source=args.source, limit=args.limit, epochs=args.epochs, vocab_size=args.vocab_size
    )
    result.update(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (1 thread used), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU only: Triton interpreter for the fused loss'}",
        command="python bench/sft_cost.py "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        notes=args.notes,
    )
    write_json_atomic(Path(args.out).with_suffix(".json"), result)
    Path(args.out).with_suffix(".md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
