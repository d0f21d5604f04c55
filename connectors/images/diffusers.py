"""``DiffusersGenerator``: local diffusion models (the ``[diffusion]`` extra).

Tiers:

- fast: a turbo-class model (SD-Turbo, SDXL-Turbo, an LCM-LoRA fused model,
  FLUX schnell) makes img2img variants of the fatigued creative, or
  prompt-driven text2img when ``mode = "text2img"``;
- pro: a stronger model up-levels the *winning draft* by img2img with the
  draft's seed and a configurable strength, at the final ad size, so the
  composition that won the test is the one that scales;
- inpaint: repaints a masked region; pixels outside the mask stay bit-exact
  (``image_processor.apply_overlay``).

Weights come only from a local folder or the Hugging Face cache
(``local_files_only=True``): nothing is downloaded at run time, and a missing
model is a :class:`GenerationError` that says where to put the weights.
Pipelines are loaded once per process in a :class:`PipelineCache` and shared
between text2img, img2img and inpaint with ``from_pipe`` (no extra memory).
Each image has its own CPU ``torch.Generator`` seeded with the variant's
seed, so a seed gives the same pixels on every run (and on every device for
the initial noise).

``torch`` and ``diffusers`` are imported lazily: importing this module is
cheap, and a user without the extra gets a clear error only when a campaign
actually asks for this backend.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from PIL import Image, ImageOps
from pydantic import Field, model_validator

from connectors.images.base import Brief, GeneratorSettings, ImageGenerator, Rendered
from connectors.images.prompts import DEFAULT_NEGATIVE, choose_attributes, fill
from policies.errors import GenerationError

if TYPE_CHECKING:
    from connectors.images.base import GeneratorContext

MODES = ("img2img", "text2img")
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class TierSpec:
    """One tier's model and sampling settings (validated like a pipeline's ``check_inputs``)."""

    model: str  # a local folder (save_pretrained layout) or a hub id already in the HF cache
    steps: int = 4
    guidance: float = 0.0
    width: int = 512
    height: int = 512
    strength: float = 0.5  # img2img: how far from the input image (fast: variation; pro: up-level)
    mode: str = "img2img"  # fast tier only: img2img of the parent, or text2img from the prompt
    negative_prompt: str = DEFAULT_NEGATIVE

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model: expected a local folder or a cached hub id, got ''")
        if self.steps < 1:
            raise ValueError(f"steps: expected >= 1, got {self.steps}")
        if self.guidance < 0:
            raise ValueError(f"guidance: expected >= 0, got {self.guidance}")
        if self.width % 8 or self.height % 8 or min(self.width, self.height) < 64:
            raise ValueError(f"size: expected multiples of 8, at least 64, got {self.width}x{self.height}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength: expected 0 < strength <= 1, got {self.strength}")
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "img2img" and self.steps * self.strength < 1.0:
            raise ValueError(
                f"steps x strength: expected >= 1 for img2img (else no denoising step runs), "
                f"got {self.steps} x {self.strength}"
            )


Side = Annotated[int, Field(ge=64, le=4096)]


class DiffusersSettings(GeneratorSettings):
    """The ``[diffusers]`` section (``generator = "diffusers"``): models load once per process."""

    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    fast_model: str = "stabilityai/sd-turbo"
    fast_mode: Literal["img2img", "text2img"] = "img2img"
    fast_steps: int = Field(2, ge=1, le=200)
    fast_guidance: float = Field(0.0, ge=0.0, le=100.0)
    fast_size: tuple[Side, Side] = (512, 512)
    fast_strength: float = Field(0.5, gt=0.0, le=1.0)
    pro_model: str = "stabilityai/stable-diffusion-xl-base-1.0"
    pro_steps: int = Field(30, ge=1, le=200)
    pro_guidance: float = Field(5.0, ge=0.0, le=100.0)
    pro_size: tuple[Side, Side] = (1024, 1024)
    pro_strength: float = Field(0.35, gt=0.0, le=1.0)
    inpaint_model: str = ""  # empty: the pro model
    inpaint_steps: int = Field(30, ge=1, le=200)
    negative_prompt: str = "blurry, low quality, distorted text, watermark, extra fingers"

    @model_validator(mode="after")
    def _valid_tiers(self) -> DiffusersSettings:
        self.tier_specs()  # raises ValueError with "expected ..., got ..." for a bad combination
        return self

    def tier_specs(self) -> dict[str, TierSpec]:
        fast = TierSpec(
            model=self.fast_model, steps=self.fast_steps, guidance=self.fast_guidance, width=self.fast_size[0],
            height=self.fast_size[1], strength=self.fast_strength, mode=self.fast_mode,
            negative_prompt=self.negative_prompt,
        )  # fmt: skip
        pro = TierSpec(
            model=self.pro_model, steps=self.pro_steps, guidance=self.pro_guidance, width=self.pro_size[0],
            height=self.pro_size[1], strength=self.pro_strength, negative_prompt=self.negative_prompt,
        )  # fmt: skip
        inpaint = TierSpec(
            model=self.inpaint_model or self.pro_model, steps=self.inpaint_steps, guidance=self.pro_guidance,
            width=self.pro_size[0], height=self.pro_size[1], strength=1.0, negative_prompt=self.negative_prompt,
        )  # fmt: skip
        return {"fast": fast, "pro": pro, "inpaint": inpaint}

    def tier_strengths(self) -> dict[str, float]:
        fast = {"fast": self.fast_strength} if self.fast_mode == "img2img" else {}  # text2img has no input image
        return {**fast, "pro": self.pro_strength}


def resolve_device(device: str = "auto") -> str:
    """``auto`` → cuda, then mps, then cpu."""
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` → float16 on a GPU (bfloat16 where asked), float32 on the CPU."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    return getattr(torch, dtype)


def _import_diffusers() -> Any:
    try:
        import diffusers
        import torch  # noqa: F401
    except ImportError as exc:
        raise GenerationError(
            "the diffusers backend needs torch and diffusers: pip install 'creative-loop[diffusion]'"
        ) from exc
    # Both libraries log load-time chatter (progress bars, a spurious "kept in float32"): errors only.
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    return diffusers


def _dtype_keyword(diffusers: Any) -> str:
    """``dtype`` on diffusers that renamed ``torch_dtype`` (0.42 warns on the old name)."""
    import importlib

    try:
        module = importlib.import_module("diffusers.utils.deprecation_utils")
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(module, "_resolve_dtype") else "torch_dtype"


def _is_path(model: str) -> bool:
    """A local folder (absolute, relative, or existing) rather than an ``org/name`` hub id."""
    return Path(model).expanduser().is_dir() or model.startswith(("/", ".", "~")) or model.count("/") > 1


def _missing_model_message(model: str) -> str:
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub"
    )
    if _is_path(model):
        return (
            f"model folder {model!r} not found or incomplete: copy the model there in diffusers' "
            f"save_pretrained layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)"
        )
    return (
        f"model {model!r} is not in the local Hugging Face cache ({cache}) and weights are never downloaded "
        f"at run time: on a machine with network run `hf download {model}` and copy the cache here, "
        f"or set the model to a local folder holding its weights"
    )


class PipelineCache:
    """Diffusion pipelines loaded once per process, keyed by (model, device, dtype).

    ``get(..., kind)`` returns the text2img, img2img or inpaint pipeline of a
    model; the latter two are ``from_pipe`` views of the first (same modules).
    Thread-safe: the daemon and the web app may generate at the same time.
    """

    KINDS = ("text2img", "img2img", "inpaint")

    def __init__(self) -> None:
        self._base: dict[tuple[str, str, str], Any] = {}
        self._views: dict[tuple[str, str, str, str], Any] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times weights were read from disk (tests assert on it)

    def put(self, model: str, device: str, dtype: Any, pipe: Any) -> None:
        """Register an already-built pipeline under ``model`` (random-weight benchmarks)."""
        with self._lock:
            self._base[(model, device, str(dtype))] = pipe

    def get(self, model: str, device: str, dtype: Any, kind: str) -> Any:
        if kind not in self.KINDS:
            raise ValueError(f"kind: expected one of {', '.join(self.KINDS)}, got {kind!r}")
        diffusers = _import_diffusers()
        key = (model, device, str(dtype))
        with self._lock:
            base = self._base.get(key)
            if base is None:
                base = self._load(diffusers, model, device, dtype)
                self._base[key] = base
            if kind == "text2img":
                return base
            view = self._views.get((*key, kind))
            if view is None:
                auto = (
                    diffusers.AutoPipelineForImage2Image if kind == "img2img" else diffusers.AutoPipelineForInpainting
                )
                try:
                    view = auto.from_pipe(base)
                except (ValueError, KeyError) as exc:
                    raise GenerationError(f"model {model!r} has no {kind} pipeline: {exc}", model=model) from exc
                view.set_progress_bar_config(disable=True)
                self._views[(*key, kind)] = view
            return view

    def _load(self, diffusers: Any, model: str, device: str, dtype: Any) -> Any:
        if _is_path(model) and not Path(model).expanduser().is_dir():
            raise GenerationError(_missing_model_message(model), model=model)
        try:
            with warnings.catch_warnings():
                # diffusers 0.42 still passes an argument huggingface_hub deprecated; nothing for us to fix.
                warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)
                pipe = diffusers.AutoPipelineForText2Image.from_pretrained(
                    model, **{_dtype_keyword(diffusers): dtype}, local_files_only=True
                )
        except (OSError, ValueError) as exc:
            raise GenerationError(_missing_model_message(model), model=model) from exc
        self.loads += 1
        pipe.set_progress_bar_config(disable=True)
        try:
            return pipe.to(device)
        except (RuntimeError, AssertionError) as exc:  # no such device, or out of memory
            raise GenerationError(f"model {model!r}: cannot move to {device}: {exc}", model=model) from exc


SHARED_CACHE = PipelineCache()  # the process's one cache (like a connection pool): loads once per process


@dataclass
class DiffusersGenerator(ImageGenerator):
    """Fast drafts and pro up-levels with local diffusion models."""

    fast: TierSpec
    pro: TierSpec
    inpaint_spec: TierSpec | None = None  # default: the pro model at strength 1.0
    device: str = "auto"
    dtype: str = "auto"
    cache: PipelineCache = field(default_factory=lambda: SHARED_CACHE)
    name: str = "diffusers"
    can_inpaint = True  # a class attribute, not a field

    @classmethod
    def from_context(cls, ctx: GeneratorContext) -> DiffusersGenerator:
        """The backend ``[diffusers]`` describes (nothing loads until the first generation)."""
        settings: DiffusersSettings = ctx.settings
        specs = settings.tier_specs()
        return cls(
            fast=specs["fast"], pro=specs["pro"], inpaint_spec=specs["inpaint"], device=settings.device,
            dtype=settings.dtype,
        )  # fmt: skip

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        self._device: str | None = None

    # -- helpers -----------------------------------------------------------------
    @property
    def resolved_device(self) -> str:
        if self._device is None:
            _import_diffusers()
            self._device = resolve_device(self.device)
        return self._device

    def resolved_dtype_for_tests(self) -> Any:
        return resolve_dtype(self.dtype, self.resolved_device)

    def _pipe(self, spec: TierSpec, kind: str) -> Any:
        device = self.resolved_device
        return self.cache.get(spec.model, device, resolve_dtype(self.dtype, device), kind)

    @staticmethod
    def _generator(seed: int) -> Any:
        import torch

        # A CPU generator: the initial noise is the same whatever device runs the model.
        return torch.Generator(device="cpu").manual_seed(int(seed))

    def _run(self, pipe: Any, what: str, **kwargs: Any) -> Image.Image:
        try:
            out = pipe(output_type="pil", **kwargs)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise GenerationError(f"diffusers {what} failed: {exc}") from exc
        return out.images[0].convert("RGB")

    def _recipe(self, spec: TierSpec, mode: str, **extra: Any) -> dict[str, Any]:
        device = self.resolved_device
        return {
            "mode": mode,
            "steps": spec.steps,
            "guidance": spec.guidance,
            "width": spec.width,
            "height": spec.height,
            "negative_prompt": spec.negative_prompt if spec.guidance > 1.0 else "",
            "device": device,
            "dtype": str(resolve_dtype(self.dtype, device)).removeprefix("torch."),
            **extra,
        }

    @staticmethod
    def _sampling(spec: TierSpec, steps: int | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_inference_steps": steps or spec.steps, "guidance_scale": spec.guidance}
        if spec.guidance > 1.0 and spec.negative_prompt:
            kwargs["negative_prompt"] = spec.negative_prompt
        return kwargs

    def model_for(self, tier: str) -> str:
        return self.pro.model if tier == "pro" else self.fast.model

    def strength(self, tier: str) -> float | None:
        if tier == "pro":
            return self.pro.strength
        return self.fast.strength if self.fast.mode == "img2img" else None  # text2img has no input image

    # -- the seam --------------------------------------------------------------------
    def draft(self, source: Image.Image, brief: Brief, seed: int) -> Rendered:
        """A fast-tier variant: img2img of ``source`` (or text2img), seeded by ``seed``."""
        # 1. the prompt and the tier's settings
        spec = self.fast
        attributes = choose_attributes(brief, seed)
        prompt = fill(brief, "fast", attributes=attributes)
        sampling = self._sampling(spec)
        # 2. generate with one generator for this image
        if spec.mode == "text2img":
            image = self._run(
                self._pipe(spec, "text2img"), "text2img", prompt=prompt, width=spec.width, height=spec.height,
                generator=self._generator(seed), **sampling,
            )  # fmt: skip
            recipe = self._recipe(spec, "text2img")
        else:
            init = ImageOps.fit(source.convert("RGB"), (spec.width, spec.height), Image.Resampling.LANCZOS)
            image = self._run(
                self._pipe(spec, "img2img"), "img2img", prompt=prompt, image=init, strength=spec.strength,
                generator=self._generator(seed), **sampling,
            )  # fmt: skip
            recipe = self._recipe(spec, "img2img", strength=spec.strength)
        # 3. everything needed to render it again (the chosen attributes are the variant's traits)
        if attributes:
            recipe["attributes"] = attributes
        return Rendered(image, "fast", int(seed), recipe, prompt, spec.model, self.name)

    def render_pro(self, source: Image.Image, draft: Rendered, brief: Brief) -> Rendered:
        """Up-level ``draft`` by img2img at the pro size, with the draft's seed.

        ``draft.recipe["pro_strength"]``, when present, overrides the tier's
        strength (the loop lowers it when a render strays from the draft).
        """
        # 1. settings: the strength may come from the loop; steps grow so at least one step runs
        spec = self.pro
        strength = float(draft.recipe.get("pro_strength", spec.strength))
        if not 0.0 < strength <= 1.0:
            raise GenerationError(f"pro_strength: expected 0 < strength <= 1, got {strength}")
        steps = max(spec.steps, math.ceil(1.0 / strength - 1e-9))
        attributes = dict(draft.recipe.get("attributes") or {})
        prompt = fill(brief, "pro", attributes=attributes)
        # 2. the winning draft at the final size is the init image
        init = ImageOps.fit(draft.image.convert("RGB"), (spec.width, spec.height), Image.Resampling.LANCZOS)
        image = self._run(
            self._pipe(spec, "img2img"), "pro img2img", prompt=prompt, image=init, strength=strength,
            generator=self._generator(draft.seed), **self._sampling(spec, steps),
        )  # fmt: skip
        recipe = self._recipe(spec, "uplevel", strength=strength, from_model=draft.model)
        recipe["steps"] = steps
        if attributes:
            recipe["attributes"] = attributes
        return Rendered(image, "pro", int(draft.seed), recipe, prompt, spec.model, self.name)

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int, tier: str = "pro") -> Rendered:
        """Repaint the white part of ``mask`` in ``image``; every other pixel stays bit-exact.

        ``mask`` must have ``image``'s size; it is binarised at 50 % grey, so
        "outside the mask" means exactly the black pixels.
        """
        # 1. check inputs (say what was expected and what came)
        if mask.size != image.size:
            raise ValueError(
                f"mask: expected the image's size {image.size[0]}x{image.size[1]}, got {mask.size[0]}x{mask.size[1]}"
            )
        binary = mask.convert("L").point(lambda v: 255 if v >= 128 else 0)
        if binary.getbbox() is None:
            raise ValueError("mask: expected some white (repaint) pixels, got an all-black mask")
        spec = self.inpaint_spec or TierSpec(
            model=self.pro.model, steps=self.pro.steps, guidance=self.pro.guidance, width=self.pro.width,
            height=self.pro.height, strength=1.0, negative_prompt=self.pro.negative_prompt,
        )  # fmt: skip
        original = image.convert("RGB")
        # 2. the pipeline works at multiples of 8: round up, then back to the image's size
        w8, h8 = -(-original.width // 8) * 8, -(-original.height // 8) * 8
        init = original.resize((w8, h8), Image.Resampling.LANCZOS) if (w8, h8) != original.size else original
        pipe_mask = binary.resize((w8, h8), Image.Resampling.NEAREST) if (w8, h8) != original.size else binary
        pipe = self._pipe(spec, "inpaint")
        result = self._run(
            pipe, "inpaint", prompt=prompt, image=init, mask_image=pipe_mask, width=w8, height=h8,
            strength=spec.strength, generator=self._generator(seed), **self._sampling(spec),
        )  # fmt: skip
        if result.size != original.size:
            result = result.resize(original.size, Image.Resampling.LANCZOS)
        # 3. paste the original back outside the mask: bit-exact there
        fixed = pipe.image_processor.apply_overlay(binary, original, result)
        recipe = self._recipe(spec, "inpaint", strength=spec.strength)
        recipe.update(width=original.width, height=original.height)
        return Rendered(fixed, tier, int(seed), recipe, prompt, spec.model, self.name)
