"""The simulated ad platform and the procedural generator."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from connectors.ads.base import LaunchTestArm, PauseAds, ScaleWinner, SetBudgets
from connectors.ads.scenario import load_scenario
from connectors.ads.simulated import SimulatedAdPlatform
from connectors.images import procedural
from connectors.images.base import Brief
from connectors.images.procedural import ASPECTS, ProceduralGenerator, make_recipe, source_image
from policies.errors import TransientError


@pytest.fixture
def platform(scenario_file):  # type: ignore[no-untyped-def]
    return SimulatedAdPlatform(load_scenario(scenario_file))


def launch(platform: SimulatedAdPlatform, n: int, tier: str = "fast") -> list[dict]:
    return [
        platform.apply(
            LaunchTestArm(
                key=f"cl:e:v{i}",
                campaign="shop",
                parent_ad_id="hero",
                image=b"png",
                lineage={"variant": f"e:v{i}", "tier": tier},
            )
        )
        for i in range(n)
    ]


def test_main_ad_set_delivers_its_daily_impressions_binomially(platform):
    for _ in range(5):
        platform.run_day()
    rows = platform.insights("shop", platform.start, platform.today())
    assert len(rows) == 2 * 5
    for d in range(5):
        day_rows = [r for r in rows if r.day == platform.start + timedelta(days=d)]
        assert sum(r.impressions for r in day_rows) == 30000
    hero = [r for r in rows if r.ad_id == "hero"]
    ctr = sum(r.clicks for r in hero) / sum(r.impressions for r in hero)
    assert 0.017 < ctr < 0.023  # true CTR 2%
    assert all(r.spend_minor == round(r.impressions * 800 / 1000) for r in rows)


def test_test_arms_spend_their_budget_with_noise_and_at_most_25_percent_over(platform):
    arms = launch(platform, 3)
    budgets = ((arms[0]["adset_id"], 1000), (arms[1]["adset_id"], 500), (arms[2]["adset_id"], 0))
    spends = {a["ad_id"]: [] for a in arms}
    for _ in range(60):
        platform.apply(SetBudgets(key=f"b{platform.day}", campaign="shop", budgets=budgets, end_day=platform.today()))
        platform.run_day()
        for r in platform.insights("shop", platform.today() - timedelta(days=1), platform.today()):
            if r.ad_id in spends:
                spends[r.ad_id].append(r.spend_minor)
    s0, s1 = np.array(spends[arms[0]["ad_id"]]), np.array(spends[arms[1]["ad_id"]])
    assert s0.max() <= 1250 and s1.max() <= 625
    assert s0.std() > 0 and 800 < s0.mean() < 1200
    assert spends[arms[2]["ad_id"]] == []  # a zero budget pauses the arm


def test_budgets_expire_after_their_end_day(platform):
    (arm,) = launch(platform, 1)
    platform.apply(SetBudgets(key="b", campaign="shop", budgets=((arm["adset_id"], 1000),), end_day=platform.today()))
    platform.run_day()
    platform.run_day()  # the loop did not renew the budget: no delivery
    rows = [r for r in platform.insights("shop", platform.start, platform.today()) if r.ad_id == arm["ad_id"]]
    assert len(rows) == 1


def test_variant_ctr_depends_only_on_its_identity_and_tier(scenario_file):
    a, b = SimulatedAdPlatform(load_scenario(scenario_file)), SimulatedAdPlatform(load_scenario(scenario_file))
    b.run_day()
    fa, fb = launch(a, 4), launch(b, 4)
    ctrs_a = [a.ads[x["ad_id"]].base_ctr for x in fa]
    assert ctrs_a == [b.ads[x["ad_id"]].base_ctr for x in fb]
    assert len(set(ctrs_a)) == 4
    pro = SimulatedAdPlatform(load_scenario(scenario_file))
    fp = launch(pro, 4, tier="pro")
    assert [pro.ads[x["ad_id"]].base_ctr for x in fp] == pytest.approx([c * 1.10 for c in ctrs_a])


def test_mutations_are_found_by_key_and_never_duplicated(platform):
    m = LaunchTestArm(key="cl:e:v1", campaign="shop", parent_ad_id="hero", image=b"x", lineage={"variant": "e:v1"})
    assert platform.find(m) is None
    first = platform.apply(m)
    assert platform.find(m) == first and platform.apply(m) == first
    assert sum(1 for a in platform.ads.values() if a.name == "cl:e:v1") == 1
    s = ScaleWinner(
        key="cl:e:scale", campaign="shop", parent_ad_id="hero", image=b"y", lineage={"variant": "e:v1", "tier": "pro"}
    )
    done = platform.apply(s)
    assert platform.apply(s) == done and platform.ads["hero"].status == "PAUSED"
    platform.apply(PauseAds(key="p", campaign="shop", ad_ids=(first["ad_id"],)))
    assert platform.ads[first["ad_id"]].status == "PAUSED"


def test_state_survives_a_restart(scenario_file, tmp_path):
    path = tmp_path / "state.json"
    p1 = SimulatedAdPlatform(load_scenario(scenario_file), state_path=path)
    launch(p1, 2)
    for _ in range(3):
        p1.run_day()
    p2 = SimulatedAdPlatform(load_scenario(scenario_file), state_path=path)
    assert p2.day == 3 and set(p2.ads) == set(p1.ads) and p2.rows == p1.rows
    # A restart from a copy of the state file goes on exactly as the original does.
    copy = tmp_path / "copy.json"
    copy.write_bytes(path.read_bytes())
    p3 = SimulatedAdPlatform(load_scenario(scenario_file), state_path=copy)
    p1.run_day()
    p3.run_day()
    assert p3.rows == p1.rows  # the random stream continues where it stopped


def test_two_objects_on_one_state_file_are_one_platform(scenario_file, tmp_path):
    """Another process's change is seen before the next read or change: no write is lost, no day repeats."""
    path = tmp_path / "state.json"
    daemon = SimulatedAdPlatform(load_scenario(scenario_file), state_path=path)
    first = launch(daemon, 1)[0]
    daemon.run_day()
    other = SimulatedAdPlatform(load_scenario(scenario_file), state_path=path)  # e.g. `reject` beside the daemon
    other.apply(PauseAds(key="p", campaign="shop", ad_ids=(first["ad_id"],), adset_ids=(first["adset_id"],)))
    daemon.run_day()  # the daemon's next change starts from the newest state
    assert daemon.day == 2 and other.today() == daemon.today()
    assert daemon.ads[first["ad_id"]].status == "PAUSED" and daemon.adsets[first["adset_id"]].status == "PAUSED"
    saved = json.loads(path.read_text())
    assert saved["day"] == 2
    assert {a["ad_id"]: a["status"] for a in saved["ads"]}[first["ad_id"]] == "PAUSED"


def test_a_change_that_cannot_be_saved_did_not_happen(scenario_file, tmp_path):
    path = tmp_path / "state.json"
    p = SimulatedAdPlatform(load_scenario(scenario_file), state_path=path)
    p.run_day()
    saved = path.read_bytes()
    images = path.with_suffix(".images")
    images.rmdir()
    images.write_text("in the way")  # the save's first write fails, as on a full disk (even for root)
    with pytest.raises(TransientError, match="cannot save its state"):
        p.run_day()
    assert p.day == 1 and p.today() == p.start + timedelta(days=1) and path.read_bytes() == saved


def test_injected_faults_are_transient_errors(scenario_file):
    p = SimulatedAdPlatform(load_scenario(scenario_file), fault_rate=0.5)
    errors = 0
    for _ in range(40):
        try:
            p.list_ads("shop")
        except TransientError:
            errors += 1
    assert 5 < errors < 35


def test_procedural_variants_are_deterministic_per_seed():
    src = source_image("hero", "Fresh deals", size=300)
    gen = ProceduralGenerator(draft_width=128, pro_width=256)
    brief = Brief("Fresh deals")
    a, b, c = gen.draft(src, brief, 5), gen.draft(src, brief, 5), gen.draft(src, brief, 6)
    assert a.image.tobytes() == b.image.tobytes() and a.recipe == b.recipe
    assert a.recipe != c.recipe or a.image.tobytes() != c.image.tobytes()
    aw, ah = ASPECTS[a.recipe["aspect"]]
    assert a.image.width == 128 and a.image.height == round(128 * ah / aw)
    assert a.tier == "fast" and a.model == "procedural-v1-fast" and "Fresh deals" in a.prompt


def test_pro_render_is_the_same_recipe_at_full_size():
    src = source_image("hero", "Fresh deals", size=300)
    gen = ProceduralGenerator(draft_width=128, pro_width=256)
    draft = gen.draft(src, Brief("Fresh deals"), 9)
    pro = gen.render_pro(src, draft, Brief("Fresh deals"))
    assert pro.recipe == draft.recipe and pro.seed == draft.seed and pro.tier == "pro"
    assert pro.image.width == 256
    # same composition: the pro render scaled down is close to the draft
    small = np.asarray(pro.image.resize(draft.image.size), dtype=float)
    assert np.abs(small - np.asarray(draft.image, dtype=float)).mean() < 25
    assert gen.render_pro(src, draft, Brief("Fresh deals")).image.tobytes() == pro.image.tobytes()


def _plain_lanczos(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every resize a plain LANCZOS one (no two-step reduction), as before the reducing gap."""
    resize = Image.Image.resize

    def plain(self, size, resample=None, box=None, reducing_gap=None):  # type: ignore[no-untyped-def]
        return resize(self, size, resample, box)

    monkeypatch.setattr(Image.Image, "resize", plain)


def test_the_reducing_gap_leaves_the_512_and_1080_px_tiers_as_they_were(monkeypatch):
    src = source_image("hero", "Fresh deals")  # 1080 px, as the simulator makes it
    gen, brief = ProceduralGenerator(), Brief("Fresh deals")
    seeds = range(12)  # every aspect and zoom range the recipes draw, at both tiers
    now = [(gen.draft(src, brief, s), gen.render_pro(src, gen.draft(src, brief, s), brief)) for s in seeds]
    _plain_lanczos(monkeypatch)
    before = [(gen.draft(src, brief, s), gen.render_pro(src, gen.draft(src, brief, s), brief)) for s in seeds]
    for (draft, pro), (draft0, pro0) in zip(now, before, strict=True):
        assert draft.image.tobytes() == draft0.image.tobytes()
        assert pro.image.tobytes() == pro0.image.tobytes()


def _finished_in_one_piece(img: Image.Image) -> np.ndarray:
    """The pro tier's finishing over the whole image at once, as before it ran in two halves."""
    sharp = img.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))
    return procedural._vignette(np.asarray(sharp))


@pytest.mark.parametrize("height", [7, 31, 33, 64, 257, 1920])
def test_the_pro_finish_in_two_halves_gives_every_pixel_of_one_piece(height, monkeypatch):
    rng = np.random.default_rng(height)
    # Noise is the worst case for a half's edge: sharp contrast everywhere.
    noise = Image.fromarray(rng.integers(0, 256, (height, 97, 3), dtype=np.uint8), "RGB")
    assert np.array_equal(np.asarray(procedural._finish(noise)), _finished_in_one_piece(noise))
    if height > 2 * 16:
        # The margin matters: sharpening reads 6 rows past a half's edge, so 5 extra rows would not do.
        monkeypatch.setattr(procedural, "_SHARPEN_MARGIN", 5)
        assert not np.array_equal(np.asarray(procedural._finish(noise)), _finished_in_one_piece(noise))


def test_pro_renders_finish_as_in_one_piece():
    src = source_image("hero", "Fresh deals")
    for seed in range(12):  # every aspect: square, portrait, story and landscape renders
        unfinished = procedural.render(src, make_recipe(seed), "Fresh deals", 1080, finish=False)
        finished = procedural.render(src, make_recipe(seed), "Fresh deals", 1080, finish=True)
        assert np.array_equal(np.asarray(finished), _finished_in_one_piece(unfinished))


def _graded_then_toned(img: Image.Image, grade: str, k: float, tone: list[int]) -> Image.Image:
    """The colour grade channel by channel, then the tone LUT over the whole image: as before they were one pass."""
    r, g, b = img.split()
    if grade == "warm":
        r, b = r.point(lambda v: min(255, int(v * (1 + 0.25 * k)))), b.point(lambda v: int(v * (1 - 0.25 * k)))
    elif grade == "cool":
        b, r = b.point(lambda v: min(255, int(v * (1 + 0.25 * k)))), r.point(lambda v: int(v * (1 - 0.25 * k)))
    graded = Image.merge("RGB", (r, g, b))
    if grade in ("vivid", "muted"):
        gray = ImageOps.grayscale(img).convert("RGB")
        graded = Image.blend(gray, img, 1 + k) if grade == "vivid" else Image.blend(img, gray, k)
    return graded.point(tone * 3)


@pytest.mark.parametrize("grade", procedural.GRADES)
def test_grade_and_tone_in_one_pass_give_the_bytes_of_two(grade):
    rng = np.random.default_rng(len(grade))
    noise = Image.fromarray(rng.integers(0, 256, (61, 67, 3), dtype=np.uint8), "RGB")  # every value, every channel
    for strength, brightness, contrast in [(0.2, 0.9, 0.9), (0.6, 1.15, 1.25), (0.4137, 1.0, 1.0), (1.0, 1.3, 1.6)]:
        tone = procedural._tone_lut(brightness, contrast)
        one = procedural._grade_and_tone(noise, grade, strength, tone)
        assert one.tobytes() == _graded_then_toned(noise, grade, strength, tone).tobytes()


def test_small_drafts_from_large_art_stay_close_to_a_plain_resize(monkeypatch):
    src = source_image("hero", "Fresh deals")
    gen, brief = ProceduralGenerator(draft_width=64, pro_width=64), Brief("Fresh deals")
    now = [np.asarray(gen.draft(src, brief, s).image, dtype=float) for s in range(6)]
    _plain_lanczos(monkeypatch)
    before = [np.asarray(gen.draft(src, brief, s).image, dtype=float) for s in range(6)]
    assert max(float(np.abs(a - b).mean()) for a, b in zip(now, before, strict=True)) < 0.5


def test_the_simulator_makes_source_art_at_its_size(platform):
    small = SimulatedAdPlatform(platform.scenario, source_size=128)
    ad = small.list_ads("shop")[0]
    with Image.open(io.BytesIO(small.source_creative("shop", ad.ad_id).image)) as img:
        assert img.size == (128, 128)
    with Image.open(io.BytesIO(platform.source_creative("shop", ad.ad_id).image)) as img:
        assert img.size == (1080, 1080)
    with pytest.raises(ValueError, match="source_size: expected at least 32 pixels"):
        SimulatedAdPlatform(platform.scenario, source_size=16)


def test_recipes_cover_every_aspect():
    assert {make_recipe(s)["aspect"] for s in range(200)} == set(ASPECTS)


def test_invalid_generator_widths():
    with pytest.raises(ValueError, match="widths: expected 64 <= draft_width <= pro_width"):
        ProceduralGenerator(draft_width=512, pro_width=256)


# -- trait effects (issue 17) ------------------------------------------------------

TRAITS = [{"grade": "warm", "cta": "Sign up"}, {"grade": "cool", "cta": "Sign up"}, {"grade": "warm", "cta": "See how"}]


def _with_variants(scenario_file, **variants):  # type: ignore[no-untyped-def]
    base = load_scenario(scenario_file)
    return SimulatedAdPlatform(base.model_copy(update={"variants": base.variants.model_copy(update=variants)}))


def _launch_traits(platform: SimulatedAdPlatform, traits: list[dict] | None) -> list[float]:
    out = []
    for i in range(3):
        lineage = {"variant": f"e:v{i}", "tier": "fast", **({"traits": traits[i]} if traits else {})}
        r = platform.apply(
            LaunchTestArm(key=f"cl:e:v{i}", campaign="shop", parent_ad_id="hero", image=b"p", lineage=lineage)
        )
        out.append(platform.ads[r["ad_id"]].base_ctr)
    return out


def test_trait_sigma_zero_keeps_the_old_variant_ctrs(scenario_file):
    before = _launch_traits(SimulatedAdPlatform(load_scenario(scenario_file)), None)
    assert _launch_traits(_with_variants(scenario_file, trait_sigma=0.0), TRAITS) == before


def test_explicit_trait_effects_multiply_the_ctr(scenario_file):
    plain = _launch_traits(SimulatedAdPlatform(load_scenario(scenario_file)), None)
    effects = {"grade": {"warm": 0.2, "cool": -0.1}}
    ctrs = _launch_traits(_with_variants(scenario_file, trait_effects=effects), TRAITS)
    # The idiosyncratic draw is unchanged (its own stream); only the listed levels move the CTR.
    assert ctrs == pytest.approx([plain[0] * np.exp(0.2), plain[1] * np.exp(-0.1), plain[2] * np.exp(0.2)])


def test_drawn_trait_effects_are_one_per_level_and_seeded(scenario_file):
    plain = _launch_traits(SimulatedAdPlatform(load_scenario(scenario_file)), None)
    p = _with_variants(scenario_file, trait_sigma=0.15)
    ctrs = _launch_traits(p, TRAITS)
    eff = {
        lv: p.oracle_trait_effect(*lv)
        for lv in [("grade", "warm"), ("grade", "cool"), ("cta", "Sign up"), ("cta", "See how")]
    }
    assert len(set(eff.values())) == 4 and all(abs(e) < 1.0 for e in eff.values())
    expected = [plain[i] * np.exp(sum(eff[(f, v)] for f, v in t.items())) for i, t in enumerate(TRAITS)]
    assert ctrs == pytest.approx(expected)
    again = _with_variants(scenario_file, trait_sigma=0.15)
    assert again.oracle_trait_effect("grade", "warm") == eff[("grade", "warm")]  # the same account's taste


def test_a_scaled_winners_traits_are_taken_back_from_its_variants(scenario_file):
    p = _with_variants(scenario_file, trait_effects={"grade": {"warm": 0.3}})
    scaled = p.apply(
        ScaleWinner(key="cl:e:scale", campaign="shop", parent_ad_id="hero", image=b"p",
                    lineage={"variant": "e:v1", "tier": "pro", "traits": {"grade": "warm"}})
    )  # fmt: skip
    parent_ctr = p.ads[scaled["ad_id"]].base_ctr
    child = {"variant": "f:v1", "tier": "fast"}
    same = p.apply(LaunchTestArm(key="cl:f:v1", campaign="shop", parent_ad_id=scaled["ad_id"], image=b"p",
                                 lineage={**child, "traits": {"grade": "warm"}}))  # fmt: skip
    # A warm child of a warm parent gains nothing from warm: only its own draw moves it.
    plain = SimulatedAdPlatform(load_scenario(scenario_file))
    plain.ads["parent"] = dataclasses.replace(p.ads[scaled["ad_id"]], ad_id="parent", lineage={})
    ref = plain.apply(LaunchTestArm(key="cl:f:v1", campaign="shop", parent_ad_id="parent", image=b"p", lineage=child))
    assert p.ads[same["ad_id"]].base_ctr == pytest.approx(plain.ads[ref["ad_id"]].base_ctr)
    assert parent_ctr > 0


def test_trait_effects_out_of_range_are_refused(tmp_path, scenario_file):
    from policies.errors import ConfigError

    text = scenario_file.read_text().replace(
        "pro_lift = 0.10", "pro_lift = 0.10\n[variants.trait_effects]\ngrade = { warm = 9.0 }"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match="trait_effects.grade.warm"):
        load_scenario(bad)
