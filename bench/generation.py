"""Image generation throughput: images per second and peak memory, per backend and tier.

    python bench/generation.py            # CPU: procedural draft/pro, tiny diffusers draft/pro/inpaint
    python bench/generation.py --gpu      # + architecture-true SD-Turbo (512²) and SDXL (1024²) on CUDA
    python bench/generation.py --json out.json

The GPU cases build the real architectures (SD 2.1/SD-Turbo UNet + OpenCLIP-H,
SDXL UNet + CLIP-L + OpenCLIP-bigG, the SD VAE) from configs with random
weights, fp16, so the compute cost is the real one though nothing is
downloaded; the pictures are noise.  Each CPU case runs in its own process so
its peak RSS is its own (imports included).  Figures are printed, never
judged: compare them with the published ones in
``shared/reference/diffusers-offline.md``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "images"))  # dummy_diffusers: random-weight pipelines beside the tests

CPU_CASES = {
    # name: (backend, tier, size, steps, images)
    "procedural draft": ("procedural", "fast", 512, 0, 20),
    "procedural pro": ("procedural", "pro", 1080, 0, 10),
    # A generation worker's draft job (loop.tasks.generate): the source read from the image store, the
    # draft stored; with decoded=0 the store decodes the 1080 px source for every job (before 2026-12-01).
    "procedural draft job, worker": ("job", "fast", 512, 0, 24),
    "procedural draft job, worker, decoded=0": ("job", "fast", 512, 0, 24),
    "diffusers tiny draft (img2img)": ("tiny", "fast", 256, 2, 10),
    "diffusers tiny pro (up-level)": ("tiny", "pro", 512, 4, 5),
    "diffusers tiny inpaint": ("tiny", "inpaint", 256, 2, 10),
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _brief() -> Any:
    from connectors.images.base import Brief

    return Brief(headline="Spring sale", message="Spring sale on running shoes", brand_terms=("Acme",))


def run_cpu_case(name: str) -> dict[str, Any]:
    """One CPU case in this process: warm up once, then time ``images`` generations."""
    backend, tier, size, steps, n = CPU_CASES[name]
    from connectors.images.procedural import ProceduralGenerator, source_image

    source = source_image("hero", "Spring sale", size=1080)
    brief = _brief()
    if backend == "job":
        from types import SimpleNamespace

        from loop.tasks import _brief_dict, generate
        from storage.images import ImageStore

        root = Path(tempfile.mkdtemp(prefix="bench-generation-"))
        atexit.register(shutil.rmtree, root, True)
        images = ImageStore(root, decoded=0 if name.endswith("decoded=0") else 4)
        worker = SimpleNamespace(app=SimpleNamespace(resources=SimpleNamespace(
            images=images, generators={"procedural": ProceduralGenerator()})))  # fmt: skip
        job = {"generator": "procedural", "op": "draft", "source": images.put(source), "brief": _brief_dict(brief)}

        def one(i: int) -> Any:
            return generate(worker, {**job, "seed": i})

    elif backend == "procedural":
        gen: Any = ProceduralGenerator()
        first = gen.draft(source, brief, 0)

        def one(i: int) -> Any:
            return gen.draft(source, brief, i) if tier == "fast" else gen.render_pro(source, first, brief)

    else:
        import torch
        from dummy_diffusers import random_pipeline

        from connectors.images.diffusers import DiffusersGenerator, PipelineCache, TierSpec

        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        cache = PipelineCache()
        with tempfile.TemporaryDirectory() as tmp:
            pipe = random_pipeline("tiny-sd", Path(tmp) / "tok", seed=0)
        cache.put("tiny-sd", "cpu", torch.float32, pipe)
        spec = TierSpec(model="tiny-sd", steps=steps, width=size, height=size, strength=0.5)
        gen = DiffusersGenerator(fast=spec, pro=spec, device="cpu", dtype="float32", cache=cache)
        first = gen.draft(source, brief, 0)
        from PIL import Image

        mask = Image.new("L", (size, size), 0)
        mask.paste(255, (size // 4, size // 4, size // 2, size // 2))
        base = first.image.resize((size, size))

        def one(i: int) -> Any:
            if tier == "fast":
                return gen.draft(source, brief, i)
            if tier == "pro":
                return gen.render_pro(source, first, brief)
            return gen.inpaint(base, mask, "a red sneaker", i)

    one(0)  # warm-up: first-call allocations and lazy imports
    start = time.perf_counter()
    for i in range(n):
        one(i + 1)
    elapsed = time.perf_counter() - start
    return {
        "case": name,
        "device": "cpu",
        "size": f"{size} px wide" if backend in ("procedural", "job") else f"{size}²",
        "steps": steps or "-",
        "images": n,
        "ms_per_image": 1000.0 * elapsed / n,
        "images_per_s": n / elapsed,
        "peak_mem_mb": _peak_rss_mb(),
        "mem_kind": "RSS",
    }


def cpu_cases() -> list[dict[str, Any]]:
    rows = []
    for name in CPU_CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", name], capture_output=True, text=True, check=False, cwd=ROOT
        )
        if out.returncode != 0:
            rows.append({"case": name, "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


# -- GPU: architecture-true configurations with random weights ------------------------
GPU_CASES = [
    # (label, arch, tier, size, steps, guidance, strength, published figure for comparison)
    ("SD-Turbo text2img", "sd-turbo", "text2img", 512, 1, 0.0, 1.0, "SD-Turbo ORT CUDA A100: 38.2 ms"),
    ("SD-Turbo text2img", "sd-turbo", "text2img", 512, 4, 0.0, 1.0, "SD-Turbo ORT CUDA A100: 68.7 ms"),
    ("SD-Turbo draft img2img", "sd-turbo", "fast", 512, 4, 0.0, 0.5, ""),
    ("SDXL-Turbo arch text2img", "sdxl", "text2img", 512, 1, 0.0, 1.0, "SDXL-Turbo A100 fp16: ≈207 ms"),
    ("SDXL text2img (CFG 5)", "sdxl", "text2img", 1024, 30, 5.0, 1.0, "SDXL A100: 2.54–7.36 s (3.31 s fp16+SDPA)"),
    ("SDXL pro up-level img2img", "sdxl", "pro", 1024, 30, 5.0, 0.4, ""),
]


def gpu_cases(repeats: int = 3) -> tuple[list[dict[str, Any]], str]:
    import torch

    from connectors.images.diffusers import PipelineCache

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device here")
    card = torch.cuda.get_device_name(0)
    warnings.filterwarnings("ignore")  # random fp16 weights overflow to NaN in the VAE: the cast warns
    from PIL import Image

    source = Image.new("RGB", (1024, 1024), (37, 99, 235))
    brief = _brief()
    rows: list[dict[str, Any]] = []
    built: dict[str, Any] = {}
    cache_box = [PipelineCache()]
    for case in GPU_CASES:
        try:
            rows.append(_gpu_case(case, built, cache_box, source, brief, card, repeats))
        except Exception as exc:  # one broken case must not cost the rest of a GPU lease
            rows.append(
                {"case": f"{case[0]} {case[3]}² {case[4]} steps", "error": f"{type(exc).__name__}: {exc}"[:300]}
            )
            print(f"{case[0]}: {type(exc).__name__}: {exc}", flush=True)
    return rows, card


def _gpu_case(case: tuple, built: dict, cache_box: list, source: Any, brief: Any, card: str, repeats: int) -> dict:  # type: ignore[type-arg]
    import torch
    from dummy_diffusers import random_pipeline

    from connectors.images.diffusers import DiffusersGenerator, PipelineCache, TierSpec

    label, arch, tier, size, steps, guidance, strength, published = case
    if arch not in built:
        for other in list(built):  # one architecture on the card at a time
            del built[other]
        cache_box[0] = PipelineCache()
        torch.cuda.empty_cache()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            pipe = random_pipeline(arch, Path(tmp) / "tok", seed=0, device="cuda", dtype=torch.float16)
        built[arch] = pipe
        cache_box[0].put(arch, "cuda", torch.float16, pipe)
        params = sum(p.numel() for p in pipe.unet.parameters()) / 1e9
        print(f"built {arch}: UNet {params:.2f} B parameters in {time.perf_counter() - t0:.1f} s", flush=True)
    mode = "text2img" if tier == "text2img" else "img2img"
    spec = TierSpec(
        model=arch, steps=steps, guidance=guidance, width=size, height=size,
        strength=strength if mode == "img2img" else 0.5, mode=mode,
    )  # fmt: skip
    gen = DiffusersGenerator(fast=spec, pro=spec, device="cuda", dtype="float16", cache=cache_box[0])
    draft = gen.draft(source, brief, 0) if tier == "pro" else None

    def one(i: int, gen: Any = gen, tier: str = tier, draft: Any = draft) -> Any:
        return gen.render_pro(source, draft, brief) if tier == "pro" else gen.draft(source, brief, i)

    one(0)  # warm-up (cuDNN/cuBLAS autotuning, allocator)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        one(i + 1)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    best, mean = min(times), sum(times) / len(times)
    print(f"{label} {size}² {steps} steps: {1000 * mean:.1f} ms/image", flush=True)
    return {
        "case": label, "device": card, "size": f"{size}²",
        "steps": steps if mode == "text2img" else f"{steps}×{strength} = {max(1, int(steps * strength))}",
        "images": repeats, "ms_per_image": 1000.0 * mean, "best_ms": 1000.0 * best,
        "images_per_s": 1.0 / mean, "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20,
        "mem_kind": "CUDA allocated", "published": published,
    }  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    head = "| case | device | size | steps | ms/image | images/s | peak memory | published (reference) |"
    lines = [head, "| --- | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} | | | | | | |")
            continue
        mem = f"{r['peak_mem_mb']:.0f} MiB {r['mem_kind']}"
        lines.append(
            f"| {r['case']} | {r['device']} | {r['size']} | {r['steps']} | {r['ms_per_image']:.1f} "
            f"| {r['images_per_s']:.2f} | {mem} | {r.get('published', '')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="also time architecture-true SD-Turbo and SDXL on CUDA")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU cases")
    ap.add_argument("--repeats", type=int, default=3, help="timed images per GPU case")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # one CPU case, in a child process
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_cpu_case(args.case)))
        return 0
    rows: list[dict[str, Any]] = []
    if not args.gpu_only:
        rows += cpu_cases()
        print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 torch thread")
    if args.gpu or args.gpu_only:
        gpu_rows, card = gpu_cases(args.repeats)
        rows += gpu_rows
        print(f"GPU: {card}, fp16, random weights, SDPA attention")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
