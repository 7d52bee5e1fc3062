"""The GPU figures (bench/device.sh runs this on the device machine): all-MiniLM-L6-v2 in fp16
on CUDA, embedding throughput and the embedding work of scoring, each beside the same work on
the machine's CPU in the same run.

    python bench/device.py --model DIR [--texts 20000] [--cpu-texts 2000] [--device cuda]

Reads only what travels with the repository (the T0 rows in bench/data/t0) and the model
directory given. Imports no gapfill module beyond what torch and sentence-transformers need, so
it runs where the project's other dependencies are not installed (the device machine has
PyTorch and sentence-transformers, nothing else). Prints one JSON object.

Figures:
- embedding throughput: T0 rows (prompt and completion, one text each), texts/s;
- scoring's embedding work: 500 candidates against 20,000 existing rows, the way the semantic
  duplicate filter does it (embed the candidates, embed the existing rows once, the nearest
  existing row per candidate by cosine), candidates/s, existing rows embedded in the same call.
"""

from __future__ import annotations

import argparse
import json
import lzma
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T0 = ROOT / "bench" / "data" / "t0" / "t0_train_50k.jsonl.xz"


def rows(count: int) -> list[str]:
    texts = []
    with lzma.open(T0, "rt") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append(f"{record['prompt']}\n{record['completion']}")
            if len(texts) == count:
                break
    return texts


def rate(model: object, texts: list[str], batch: int) -> float:
    started = time.perf_counter()
    model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_tensor=True)  # type: ignore[attr-defined]
    sync()
    return len(texts) / (time.perf_counter() - started)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def scoring(model: object, existing: list[str], candidates: list[str], batch: int) -> float:
    import torch

    started = time.perf_counter()
    base = model.encode(
        existing, batch_size=batch, normalize_embeddings=True, convert_to_tensor=True
    )  # type: ignore[attr-defined]
    queries = model.encode(
        candidates, batch_size=batch, normalize_embeddings=True, convert_to_tensor=True
    )  # type: ignore[attr-defined]
    best = torch.max(queries @ base.T, dim=1)
    _ = best.values.float().cpu()
    sync()
    return len(candidates) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--cpu-texts", type=int, default=2_000)
    parser.add_argument("--existing", type=int, default=20_000)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    device = args.device if args.device != "cuda" or torch.cuda.is_available() else "cpu"
    texts = rows(max(args.texts, args.existing + args.candidates))
    result: dict[str, object] = {
        "machine": platform.node(),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "asked_for": args.device,
        "torch": torch.__version__,
    }
    accelerated = SentenceTransformer(str(args.model), device=device)
    # fp16 as saved on the GPU; a CPU (the dry run) computes fp16 many times slower than fp32
    accelerated = accelerated.half() if device == "cuda" else accelerated.float()
    accelerated.encode(texts[:256], batch_size=256)  # warm-up: kernels, allocator
    result["embedding_texts_per_s"] = rate(accelerated, texts[: args.texts], 256)
    result["scoring_candidates_per_s"] = scoring(
        accelerated, texts[: args.existing], texts[-args.candidates :], 256
    )
    cpu = SentenceTransformer(str(args.model), device="cpu").float()
    cpu.encode(texts[:64], batch_size=64)
    result["cpu_embedding_texts_per_s"] = rate(cpu, texts[: args.cpu_texts], 64)
    result["speedup"] = result["embedding_texts_per_s"] / result["cpu_embedding_texts_per_s"]  # type: ignore[operator]
    result["sizes"] = {
        "texts": args.texts,
        "cpu_texts": args.cpu_texts,
        "existing": args.existing,
        "candidates": args.candidates,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
