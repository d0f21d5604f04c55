"""GeminiGenerator: the real google-genai SDK against a fake Gemini API on loopback."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("google.genai")

import fake_gemini as fg  # noqa: E402

from connectors.images.base import Brief, Rendered  # noqa: E402
from connectors.images.gemini import GeminiGenerator  # noqa: E402
from connectors.retry import RetrySettings  # noqa: E402
from policies.errors import GenerationError, RateLimited, TransientError  # noqa: E402

BRIEF = Brief(headline="Spring sale", message="Spring sale on running shoes", brand_terms=("Acme",))
RETRY = RetrySettings(attempts=3, backoff=0.0, max_backoff=0.0, jitter=0.0, deadline=30.0)


@pytest.fixture
def server() -> Iterator[fg.FakeGemini]:
    with fg.fake_gemini() as s:
        yield s


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def gen(server: fg.FakeGemini, sleeps: list[float]) -> GeminiGenerator:
    return GeminiGenerator(api_key="test-key-123", base_url=server.url, retry=RETRY, sleep=sleeps.append, timeout_s=10)


def _source() -> Image.Image:
    return Image.new("RGB", (80, 80), (200, 30, 30))


def _sent_image(request: dict, index: int) -> Image.Image:
    parts = request["body"]["contents"][0]["parts"]
    images = [p for p in parts if "inlineData" in p]
    data = images[index]["inlineData"]["data"]  # the SDK sends URL-safe base64
    return Image.open(io.BytesIO(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))))


def test_draft_success(gen: GeminiGenerator, server: fg.FakeGemini) -> None:
    r = gen.draft(_source(), BRIEF, seed=42)
    assert r.size == (64, 64) and r.tier == "fast" and r.seed == 42 and r.generator == "gemini"
    assert r.model == "gemini-2.5-flash-image" and "Spring sale on running shoes" in r.prompt
    assert r.image.getpixel((0, 0)) == (37, 99, 235)
    (req,) = server.requests
    assert req["path"].endswith("/models/gemini-2.5-flash-image:generateContent")
    assert req["headers"]["x-goog-api-key"] == "test-key-123"
    assert req["body"]["generationConfig"]["seed"] == 42
    assert req["body"]["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert _sent_image(req, 0).getpixel((0, 0)) == (200, 30, 30)


def test_pro_sends_the_winning_draft(gen: GeminiGenerator, server: fg.FakeGemini) -> None:
    draft = Rendered(Image.new("RGB", (64, 64), (1, 2, 3)), "fast", 7, {}, "p", "gemini-2.5-flash-image", "gemini")
    server.queue((200, fg.image_response((9, 9, 9), (128, 128)), {}))
    pro = gen.render_pro(_source(), draft, BRIEF)
    assert pro.tier == "pro" and pro.seed == 7 and pro.size == (128, 128) and pro.model == "gemini-3-pro-image-preview"
    (req,) = server.requests
    assert req["path"].endswith("/models/gemini-3-pro-image-preview:generateContent")
    assert _sent_image(req, 0).getpixel((0, 0)) == (1, 2, 3)


def test_rate_limit_then_success_is_retried(gen: GeminiGenerator, server: fg.FakeGemini, sleeps: list[float]) -> None:
    server.queue(fg.RATE_LIMITED, fg.SERVER_ERROR)
    r = gen.draft(_source(), BRIEF, seed=1)
    assert r.size == (64, 64)
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_rate_limit_exhausted_stays_temporary(gen: GeminiGenerator, server: fg.FakeGemini) -> None:
    server.queue(fg.RATE_LIMITED, fg.RATE_LIMITED, fg.RATE_LIMITED)
    with pytest.raises(RateLimited, match="rate limited") as info:
        gen.draft(_source(), BRIEF, seed=1)
    assert info.value.retry_after == 0.0 and len(server.requests) == 3
    server.queue(fg.SERVER_ERROR, fg.SERVER_ERROR, fg.SERVER_ERROR)
    with pytest.raises(TransientError, match="server error 503"):
        gen.draft(_source(), BRIEF, seed=1)


@pytest.mark.parametrize(
    ("response", "match"),
    [(fg.PROMPT_BLOCKED, r"prompt blocked \(SAFETY\)"), (fg.IMAGE_SAFETY, r"image refused \(IMAGE_SAFETY\)")],
)
def test_safety_block_is_refused_and_not_retried(
    gen: GeminiGenerator, server: fg.FakeGemini, response: tuple, match: str
) -> None:
    server.queue(response)
    with pytest.raises(GenerationError, match=match) as info:
        gen.draft(_source(), BRIEF, seed=1)
    assert info.value.refused is True
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (fg.NO_IMAGE, "malformed response: no image"),
        (fg.BAD_IMAGE, "malformed response: undecodable image"),
        (fg.NOT_JSON, "malformed response"),
        ((200, {"modelVersion": "fake"}, {}), "malformed response: no candidates"),
        (fg.BAD_KEY, "request refused 400"),
    ],
)
def test_malformed_or_refused_request_is_a_generation_error(
    gen: GeminiGenerator, server: fg.FakeGemini, response: tuple, match: str
) -> None:
    server.queue(response)
    with pytest.raises(GenerationError, match=match) as info:
        gen.draft(_source(), BRIEF, seed=1)
    assert info.value.refused is False
    assert len(server.requests) == 1


def test_inpaint_keeps_outside_pixels(gen: GeminiGenerator, server: fg.FakeGemini) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (10, 10, 30, 30))
    fixed = gen.inpaint(image, mask, "a red sneaker", seed=3)
    before, after, outside = np.asarray(image), np.asarray(fixed.image), np.asarray(mask) == 0
    np.testing.assert_array_equal(after[outside], before[outside])
    assert (after[~outside] == (37, 99, 235)).all()
    (req,) = server.requests
    assert len([p for p in req["body"]["contents"][0]["parts"] if "inlineData" in p]) == 2


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="api_key"):
        GeminiGenerator(api_key="")
    with pytest.raises(ValueError, match="timeout_s"):
        GeminiGenerator(api_key="k", timeout_s=0)


def test_draft_traits_are_the_prompt_attributes_and_the_pro_render_keeps_them(
    gen: GeminiGenerator, server: fg.FakeGemini
) -> None:
    """Trait extraction for the Gemini backend: the attribute slots the seed filled, sent and recorded."""
    from connectors.images.prompts import choose_attributes
    from connectors.images.traits import traits_for

    draft = gen.draft(_source(), BRIEF, seed=42)
    chosen = choose_attributes(BRIEF, 42)
    assert draft.recipe["attributes"] == chosen and traits_for(draft.generator, draft.recipe) == chosen
    sent = " ".join(p.get("text", "") for p in server.requests[0]["body"]["contents"][0]["parts"])
    assert all(value in sent for value in chosen.values())
    pro = gen.render_pro(_source(), draft, BRIEF)
    assert pro.recipe["attributes"] == chosen and all(value in pro.prompt for value in chosen.values())
