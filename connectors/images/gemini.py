"""``GeminiGenerator``: the "Nano Banana" image tiers through the ``google-genai`` SDK.

- fast tier: ``gemini-2.5-flash-image`` makes a variant from the parent image
  and the filled prompt;
- pro tier: ``gemini-3-pro-image-preview`` up-levels the *winning draft*: the
  draft is sent with the prompt, so the composition that won is kept;
- inpaint: the image and the mask are sent with the prompt, and the pixels
  outside the mask are pasted back from the original (bit-exact there).

The API key comes from the environment variable the config names; the base
URL is configurable (``http_options``), which is how the tests point the real
SDK at a fake server on loopback.  The SDK's own retries are switched off:
429 and 5xx become our ``RateLimited``/``TransientError`` and are retried once,
by :func:`connectors.retry.call_with_retry`.  A safety block is recorded as
``GenerationError(refused=True)`` and never retried.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError
from pydantic import Field

from connectors.images.base import Brief, GeneratorSettings, ImageGenerator, Rendered
from connectors.images.prompts import choose_attributes, fill
from connectors.retry import RetrySettings, call_with_retry
from connectors.settings import MAX_SECONDS
from policies.errors import GenerationError, RateLimited, TransientError

if TYPE_CHECKING:
    from connectors.images.base import GeneratorContext

FAST_MODEL = "gemini-2.5-flash-image"
PRO_MODEL = "gemini-3-pro-image-preview"
# finishReason / blockReason values that mean "refused on policy grounds".
REFUSALS = frozenset(
    {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_PROHIBITED_CONTENT"}
)


class GeminiSettings(GeneratorSettings):
    """The ``[gemini]`` section (``generator = "gemini"``, the "Nano Banana" tiers)."""

    api_key_env: str = "GEMINI_API_KEY"
    fast_model: str = FAST_MODEL
    pro_model: str = PRO_MODEL
    base_url: str = ""  # empty: Google's endpoint
    timeout_s: float = Field(120.0, gt=0, le=MAX_SECONDS)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _enum_name(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "name", value)).rsplit(".", 1)[-1].upper()


class GeminiGenerator(ImageGenerator):
    """Image generation and editing with Gemini image models."""

    name = "gemini"
    can_inpaint = True

    def __init__(
        self,
        api_key: str,
        fast_model: str = FAST_MODEL,
        pro_model: str = PRO_MODEL,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        retry: RetrySettings = RetrySettings(),
        sleep: Callable[[float], None] = time.sleep,
        client: Any = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key: expected a non-empty key (read from the environment variable the config names)")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s: expected > 0, got {timeout_s}")
        self.fast_model, self.pro_model = fast_model, pro_model
        self.base_url = base_url
        self.retry, self.sleep = retry, sleep
        if client is None:
            try:
                from google import genai
                from google.genai import types
            except ImportError as exc:
                raise GenerationError(
                    "the gemini backend needs google-genai: pip install 'creative-loop[gemini]'"
                ) from exc
            options = types.HttpOptions(
                base_url=base_url or None,
                timeout=int(timeout_s * 1000),  # milliseconds
                retry_options=types.HttpRetryOptions(attempts=1),  # retries are ours, declared once
            )
            client = genai.Client(api_key=api_key, vertexai=False, http_options=options)
        self.client = client

    @classmethod
    def from_context(cls, ctx: GeneratorContext) -> GeminiGenerator:
        """The backend ``[gemini]`` describes; its API key from the environment variable named there."""
        settings: GeminiSettings = ctx.settings
        return cls(
            api_key=ctx.secret("api_key_env"), fast_model=settings.fast_model, pro_model=settings.pro_model,
            base_url=settings.base_url or None, timeout_s=settings.timeout_s,
        )  # fmt: skip

    def model_for(self, tier: str) -> str:
        return self.pro_model if tier == "pro" else self.fast_model

    # -- the seam --------------------------------------------------------------------
    def draft(self, source: Image.Image, brief: Brief, seed: int) -> Rendered:
        """A fast-tier variant of ``source`` (image + prompt), seeded by ``seed``."""
        attributes = choose_attributes(brief, seed)
        prompt = fill(brief, "fast", attributes=attributes)
        instruction = f"Create a new variant of this advertisement image: {prompt}"
        image = self._generate(self.fast_model, [instruction, source], seed)
        recipe: dict[str, Any] = {"mode": "edit", "seed_sent": int(seed), "width": image.width, "height": image.height}
        if attributes:
            recipe["attributes"] = attributes  # the variant's traits
        return Rendered(image, "fast", int(seed), recipe, prompt, self.fast_model, self.name)

    def render_pro(self, source: Image.Image, draft: Rendered, brief: Brief) -> Rendered:
        """The winning draft, up-levelled by the pro model; its composition is kept."""
        attributes = dict(draft.recipe.get("attributes") or {})
        prompt = fill(brief, "pro", attributes=attributes)
        instruction = (
            "Re-render this advertisement at final quality. Keep the composition, layout, "
            f"subjects and colours exactly; improve detail, lighting and finish: {prompt}"
        )
        image = self._generate(self.pro_model, [instruction, draft.image], draft.seed)
        recipe: dict[str, Any] = {
            "mode": "uplevel",
            "from_model": draft.model,
            "width": image.width,
            "height": image.height,
        }
        if attributes:
            recipe["attributes"] = attributes
        return Rendered(image, "pro", int(draft.seed), recipe, prompt, self.pro_model, self.name)

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str, seed: int, tier: str = "pro") -> Rendered:
        """Repaint the white part of ``mask``; every pixel outside it is the original's, bit-exact."""
        if mask.size != image.size:
            raise ValueError(
                f"mask: expected the image's size {image.size[0]}x{image.size[1]}, got {mask.size[0]}x{mask.size[1]}"
            )
        binary = mask.convert("L").point(lambda v: 255 if v >= 128 else 0)
        if binary.getbbox() is None:
            raise ValueError("mask: expected some white (repaint) pixels, got an all-black mask")
        model = self.model_for(tier)
        instruction = (
            "Edit only the region that is white in the second image (the mask) of the first image; "
            f"leave everything else unchanged: {prompt}"
        )
        original = image.convert("RGB")
        edited = self._generate(model, [instruction, original, binary.convert("RGB")], seed)
        if edited.size != original.size:
            edited = edited.resize(original.size, Image.Resampling.LANCZOS)
        fixed = Image.composite(edited, original, binary)
        recipe = {"mode": "inpaint", "width": original.width, "height": original.height}
        return Rendered(fixed, tier, int(seed), recipe, prompt, model, self.name)

    # -- the call ------------------------------------------------------------------------
    def _generate(self, model: str, parts: list[Any], seed: int) -> Image.Image:
        contents = [self._part(p) for p in parts]
        response = call_with_retry(
            lambda: self._call(model, contents, seed),
            self.retry,
            sleep=self.sleep,
            what=f"Gemini {model} (seed {seed})",
        )
        return self._image_from(response, model)

    @staticmethod
    def _part(part: Any) -> Any:
        if isinstance(part, Image.Image):
            from google.genai import types

            return types.Part.from_bytes(data=_png(part), mime_type="image/png")
        return part

    def _call(self, model: str, contents: list[Any], seed: int) -> Any:
        """One request; the SDK's and httpx's errors become ours here."""
        import httpx
        from google.genai import errors, types

        config = types.GenerateContentConfig(response_modalities=["IMAGE"], seed=int(seed) & 0x7FFFFFFF)
        try:
            return self.client.models.generate_content(model=model, contents=contents, config=config)
        except errors.APIError as exc:
            code = int(getattr(exc, "code", 0) or 0)
            if code == 429:
                raise RateLimited(
                    f"gemini {model}: rate limited ({exc.message or exc.status})",
                    retry_after=_retry_after(exc), model=model,
                ) from exc  # fmt: skip
            if code >= 500 or code == 408:
                raise TransientError(f"gemini {model}: server error {code} ({exc.message})", model=model) from exc
            if code in (401, 403):
                raise GenerationError(
                    f"gemini {model}: the API key was refused ({code}): check the environment variable the config names",
                    model=model,
                ) from exc
            raise GenerationError(f"gemini {model}: request refused {code}: {exc.message}", model=model) from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransientError(f"gemini {model}: {type(exc).__name__}: {exc}", model=model) from exc
        except ValueError as exc:  # a body the SDK cannot parse
            raise GenerationError(f"gemini {model}: malformed response: {exc}", model=model) from exc

    @staticmethod
    def _image_from(response: Any, model: str) -> Image.Image:
        """The first image of ``response``; a block is a refusal, anything else malformed."""
        feedback = getattr(response, "prompt_feedback", None)
        block = _enum_name(getattr(feedback, "block_reason", None))
        if block and block != "BLOCK_REASON_UNSPECIFIED":
            raise GenerationError(f"gemini {model}: prompt blocked ({block})", refused=True, model=model)
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            raise GenerationError(f"gemini {model}: malformed response: no candidates", model=model)
        first = candidates[0]
        finish = _enum_name(getattr(first, "finish_reason", None))
        parts = getattr(getattr(first, "content", None), "parts", None) or []
        for part in parts:
            blob = getattr(part, "inline_data", None)
            if blob is not None and blob.data and str(blob.mime_type or "").startswith("image/"):
                try:
                    image = Image.open(io.BytesIO(blob.data))
                    image.load()
                except (UnidentifiedImageError, OSError) as exc:
                    raise GenerationError(
                        f"gemini {model}: malformed response: undecodable image", model=model
                    ) from exc
                return image.convert("RGB")
        if finish in REFUSALS:
            raise GenerationError(f"gemini {model}: image refused ({finish})", refused=True, model=model)
        raise GenerationError(
            f"gemini {model}: malformed response: no image (finish {finish or 'unknown'})", model=model
        )


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
