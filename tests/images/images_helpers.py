"""Fixtures for the image tests: a tiny random-weight SD pipeline saved to a folder (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~0.35 M-parameter SD pipeline in save_pretrained layout, built once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    import torch

    from connectors.images.diffusers import random_pipeline

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-sd")
    pipe = random_pipeline("tiny-sd", root / "tokenizer-src", seed=0)
    pipe.save_pretrained(root / "model")
    return root / "model"
