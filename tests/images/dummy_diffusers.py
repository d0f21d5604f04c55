"""Tiny and architecture-true diffusion pipelines with random weights, built from configs (no download).

The diffusers way: dummy components live beside the tests that use them
(``tests/images/images_helpers.py`` saves a tiny one for the backend's
tests; ``bench/generation.py`` builds the real architectures on a GPU).
Compute cost is real; the pictures are noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def char_tokenizer(folder: str | Path) -> Any:
    """A character-level CLIP tokenizer written to ``folder`` (256 bytes + their ``</w>`` forms)."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def _byte_chars() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in byte order."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


ARCHS = ("tiny-sd", "sd-turbo", "sdxl")


def random_pipeline(arch: str, tokenizer_dir: str | Path, seed: int = 0, device: str = "cpu", dtype: Any = None) -> Any:
    """A text2img pipeline of ``arch`` with seeded random weights, built from configs.

    - ``tiny-sd``: ~0.35 M parameters (the reference's tiny SD config) for tests;
    - ``sd-turbo``: the SD 2.1 / SD-Turbo architecture (865 M UNet, OpenCLIP-H text encoder);
    - ``sdxl``: the SDXL base architecture (2.6 B UNet, CLIP-L + OpenCLIP-bigG).

    Compute cost is real; the pictures are noise.  Built directly on ``device``.
    """
    import diffusers
    import torch
    import transformers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    # Load-time chatter of both libraries, errors only (as the diffusers backend sets it).
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()

    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {', '.join(ARCHS)}, got {arch!r}")
    tok = char_tokenizer(tokenizer_dir)
    eos = tok.eos_token_id
    torch.manual_seed(seed)
    # Schedulers keep their tables on the CPU: build them outside the device context.
    if arch == "tiny-sd":
        scheduler = diffusers.EulerDiscreteScheduler(timestep_spacing="trailing", steps_offset=1)
    else:
        scheduler = diffusers.EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            timestep_spacing="trailing" if arch == "sd-turbo" else "leading", steps_offset=1,
        )  # fmt: skip
    with torch.device(device):
        if arch == "tiny-sd":
            unet = diffusers.UNet2DConditionModel(
                sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=4,
                cross_attention_dim=32, attention_head_dim=4, in_channels=4, out_channels=4,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            )  # fmt: skip
            vae = diffusers.AutoencoderKL(
                block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            )  # fmt: skip
            text = CLIPTextModel(
                CLIPTextConfig(
                    hidden_size=32,
                    intermediate_size=37,
                    num_attention_heads=4,
                    num_hidden_layers=2,
                    vocab_size=len(tok),
                    eos_token_id=eos,
                    bos_token_id=tok.bos_token_id,
                    projection_dim=32,
                )  # fmt: skip
            )
            pipe = diffusers.StableDiffusionPipeline(
                unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=scheduler,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            )  # fmt: skip
        else:
            vae = diffusers.AutoencoderKL(
                block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, latent_channels=4,
                layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, sample_size=1024 if arch == "sdxl" else 768,
                scaling_factor=0.13025 if arch == "sdxl" else 0.18215,
            )  # fmt: skip
            if arch == "sd-turbo":
                unet = diffusers.UNet2DConditionModel(
                    sample_size=64, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
                )  # fmt: skip
                text = CLIPTextModel(
                    CLIPTextConfig(
                        hidden_size=1024,
                        intermediate_size=4096,
                        num_attention_heads=16,
                        num_hidden_layers=23,
                        projection_dim=1024,
                        hidden_act="gelu",
                        vocab_size=49408,
                        eos_token_id=eos,
                        bos_token_id=tok.bos_token_id,
                    )  # fmt: skip
                )
                pipe = diffusers.StableDiffusionPipeline(
                    unet=unet, vae=vae, text_encoder=text, tokenizer=tok, scheduler=scheduler,
                    safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                )  # fmt: skip
            else:
                unet = diffusers.UNet2DConditionModel(
                    sample_size=128, layers_per_block=2, block_out_channels=(320, 640, 1280),
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                    cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
                )  # fmt: skip
                text = CLIPTextModel(
                    CLIPTextConfig(
                        hidden_size=768,
                        intermediate_size=3072,
                        num_attention_heads=12,
                        num_hidden_layers=12,
                        projection_dim=768,
                        hidden_act="quick_gelu",
                        vocab_size=49408,
                        eos_token_id=eos,
                        bos_token_id=tok.bos_token_id,
                    )  # fmt: skip
                )
                text2 = CLIPTextModelWithProjection(
                    CLIPTextConfig(
                        hidden_size=1280,
                        intermediate_size=5120,
                        num_attention_heads=20,
                        num_hidden_layers=32,
                        projection_dim=1280,
                        hidden_act="gelu",
                        vocab_size=49408,
                        eos_token_id=eos,
                        bos_token_id=tok.bos_token_id,
                    )  # fmt: skip
                )
                pipe = diffusers.StableDiffusionXLPipeline(
                    unet=unet, vae=vae, text_encoder=text, text_encoder_2=text2, tokenizer=tok, tokenizer_2=tok,
                    scheduler=scheduler, add_watermarker=False,
                )  # fmt: skip
    if dtype is not None:
        pipe = pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
