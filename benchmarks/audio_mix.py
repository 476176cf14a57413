"""Audio mixing cost relative to the torchaudio log-mel front end, side by side in one run.

    python benchmarks/audio_mix.py                 # 64 clips x 1 s at 16 kHz, CPU, 2 threads
    python benchmarks/audio_mix.py --device cuda

Each adapter runs on what it mixes in a real pipeline: the spectrogram adapters on
the front end's output (64 mels, 10 ms hop, dB), WaveMix on the waveforms (with
random valid lengths, as a padded batch has). The goal is that mixing adds under 10%
to the front end. Times are medians of ``--reps`` calls; compare the percentages.
Two more columns come from the same calls on ``meta`` tensors (``benchmarks/host.py``):
the host time of one call, and how many device values it reads back (each one a
synchronisation on a GPU); on CUDA the last column counts the syncs torch reports.
"""

from __future__ import annotations

import argparse

import torch
import torchaudio
from _results import append
from host import cuda_syncs, host_time_us, median_ms, readbacks

import multimix
from multimix.audio import SpecMix, SpecMixup, WaveMix, spectrogram

NUM_CLASSES = 10
COLUMNS = ["shape", "step", "ms", "percent", "host_us"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-csv", action="store_true", help="print only; append nothing to benchmarks/results/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    samples = int(args.seconds * args.sample_rate)
    waves = (0.1 * torch.randn(args.batch, samples, generator=g)).to(device)
    lengths = torch.randint(samples // 2, samples + 1, (args.batch,), generator=g).to(device)
    labels = torch.randint(0, NUM_CLASSES, (args.batch,), generator=g).to(device)
    front_end = torch.nn.Sequential(
        torchaudio.transforms.MelSpectrogram(args.sample_rate, n_fft=1024, hop_length=160, n_mels=64),
        torchaudio.transforms.AmplitudeToDB(top_db=80),
    ).to(device)
    spec = front_end(waves)
    frames = (lengths // 160 + 1).clamp(max=spec.shape[-1])  # each clip's valid frames (hop 160), as the recipe has
    front_ms = median_ms(lambda: front_end(waves), args.reps, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"{args.batch} clips x {args.seconds:g} s at {args.sample_rate} Hz -> log-mel {tuple(spec.shape)} on {where}")
    print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, median of {args.reps}")
    on_cuda = device.type == "cuda"
    syncs = f"{'cuda syncs':>12}" if on_cuda else ""
    print(f"{'step':<50}{'ms':>8}{'% of front end':>16}{'host us':>9}{'read-backs':>12}{syncs}")
    print(f"{'front end: MelSpectrogram + AmplitudeToDB':<50}{front_ms:>8.2f}{100.0:>15.1f}%")
    cases = [
        ("SpecMixup log", SpecMixup(1.0), spec, None),
        ("SpecMixup power (dB)", SpecMixup(1.0, domain="power", db=True), spec, None),
        ("SpecMix (2 time + 2 freq bands)", SpecMix(1.0), spec, None),
        ("SpecMix, frame lengths", SpecMix(1.0), spec, frames),
        ("WaveMix, lengths, duration label", WaveMix(1.0), waves, lengths),
        ("WaveMix, lengths, energy label", WaveMix(1.0, label_weight="energy"), waves, lengths),
    ]
    meta_labels = torch.zeros(args.batch, dtype=torch.long, device="meta")
    shape = f"{args.batch}x{samples}"
    rows = [{"shape": shape, "step": "front end", "ms": f"{front_ms:.3f}", "percent": "100.0", "host_us": ""}]
    for name, adapter, inputs, lens in cases:
        for per_sample in (False, True):
            mixer = multimix.Mixer(adapter, num_classes=NUM_CLASSES, per_sample=per_sample, seed=0)
            batch = inputs.clone()
            ms = median_ms(lambda m=mixer, b=batch, n=lens: m(b, labels, lengths=n), args.reps, device)
            label = f"{name}, {'per-sample' if per_sample else 'batch'} lam"
            meta = [None if t is None else torch.empty(t.shape, dtype=t.dtype, device="meta") for t in (inputs, lens)]
            call = lambda m=mixer, b=meta[0], n=meta[1], y=meta_labels: m(b, y, lengths=n)  # noqa: E731
            host_us = host_time_us(call)
            line = f"{label:<50}{ms:>8.2f}{100 * ms / front_ms:>15.1f}%{host_us:>9.0f}{readbacks(call):>12}"
            rows.append({"shape": shape, "step": label, "ms": f"{ms:.3f}", "percent": f"{100 * ms / front_ms:.2f}",
                         "host_us": f"{host_us:.0f}"})  # fmt: skip
            if on_cuda:
                line += f"{cuda_syncs(lambda m=mixer, b=batch, n=lens: m(b, labels, lengths=n)):>12}"
            print(line)
    if device.type == "cpu":  # what logaddexp_mix's CPU route buys: the same power-domain blend by torch.logaddexp
        rows += _logaddexp_rows(spec, labels, shape, args.reps, front_ms)
    if not args.no_csv:
        print(f"raw rows appended to {append('audio_mix', device, rows, COLUMNS)}")


def _logaddexp_rows(spec: torch.Tensor, labels: torch.Tensor, shape: str, reps: int, front_ms: float) -> list[dict]:
    """What logaddexp_mix's CPU route buys: the SpecMixup power call as it runs, and the same call with the blend
    written as one torch.logaddexp (the accelerators' path), interleaved."""
    route = spectrogram.logaddexp_mix

    def by_logaddexp(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, *, db: bool = False) -> torch.Tensor:
        scale, compute = (spectrogram._DB if db else 1.0), torch.promote_types(a.dtype, torch.float32)
        lam = lam.to(device=a.device, dtype=torch.float64)
        own = a.to(compute).mul(scale).add_(torch.log(lam).to(compute))
        other = b.to(compute).mul(scale).add_(torch.log1p(-lam).to(compute))
        out = torch.logaddexp(own, other)
        return (out.div_(scale) if db else out).to(a.dtype)

    times: dict[str, list[float]] = {"CPU route": [], "torch.logaddexp": []}
    try:
        for _ in range(3):
            for label, blend in zip(times, (route, by_logaddexp), strict=True):
                spectrogram.logaddexp_mix = blend
                mixer = multimix.Mixer(SpecMixup(1.0, domain="power", db=True), NUM_CLASSES, per_sample=True, seed=0)
                batch = spec.clone()
                times[label].append(median_ms(lambda m=mixer, b=batch: m(b, labels), reps))
    finally:
        spectrogram.logaddexp_mix = route
    rows = []
    for label, values in times.items():
        ms = sorted(values)[1]
        step = f"SpecMixup power, blend by {label}"
        print(f"{step:<50}{ms:>8.2f}{100 * ms / front_ms:>15.1f}%")
        rows.append({"shape": shape, "step": step, "ms": f"{ms:.3f}",
                     "percent": f"{100 * ms / front_ms:.2f}", "host_us": ""})  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
