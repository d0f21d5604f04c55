"""Helpers for the image tests: a tiny random-weight SD pipeline saved to a folder (no download).

Not a conftest.py: several test folders' conftest modules would clash under
one name; test modules import the fixture from here instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", name="tiny_model_dir")
def tiny_model_dir_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
