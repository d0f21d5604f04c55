"""What every backend's settings section has in common (pydantic only: cheap to import).

A backend (an ad platform, an image generator) describes its own section of
the configuration file with a subclass of :class:`Settings`; the registry
line names that model (``connectors.ads.registry``, ``connectors.images.registry``)
and ``loop.config`` validates the section with it.  Every key has a default,
so a section may be left out.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# What storage can hold: money columns are 32-bit integers of minor units (2^31 - 1 = 21,474,836.47
# currency units), so any one amount stays below that.
MAX_MONEY = 20_000_000.0
MAX_SECONDS = 7 * 24 * 3600.0
Money = Annotated[float, Field(ge=0, le=MAX_MONEY)]
# The name of an environment variable (a secret's value never goes into the file).
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Settings(BaseModel):
    """A frozen, validated settings section: an unknown key is an error; inf and nan are never valid."""

    # inf and nan are valid TOML floats: never a valid setting.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


__all__ = ["ENV_NAME", "MAX_MONEY", "MAX_SECONDS", "Money", "Settings"]
