"""A content-addressed PNG store: an image's name is the SHA-256 of its bytes.

No path from outside ever reaches the filesystem: lookups take a hash, which
must be 64 lowercase hex digits.  The bytes under a hash never change, so the
last few images decoded are kept and copied when read again: a generation
worker decodes an experiment's source image once, not once per draft job.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

from PIL import Image

from policies.errors import NotFound

_HASH = re.compile(r"^[0-9a-f]{64}$")


class ImageStore:
    def __init__(self, root: str | Path, *, decoded: int = 4) -> None:
        self.root = Path(root)
        # The last ``decoded`` images decoded, by hash (about 3.5 MB each at 1080 x 1080).
        self._decoded = functools.lru_cache(maxsize=decoded)(self._decode)

    def path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not _HASH.match(digest):
            raise NotFound(f"not an image hash: {digest!r}")
        return self.root / digest[:2] / f"{digest}.png"

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a crash never leaves a half-written image under its hash.
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        return digest

    @staticmethod
    def encode(image: Image.Image) -> bytes:
        """``image`` as the PNG bytes :meth:`put` stores (safe to call from any thread)."""
        buf = io.BytesIO()
        # Fixed encoder settings: the same pixels give the same bytes and hash.
        image.save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue()

    def put(self, image: Image.Image) -> str:
        return self.put_bytes(self.encode(image))

    def get_bytes(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no image {digest} in the store") from None

    def open(self, digest: str) -> Image.Image:
        """The image under ``digest``, fully loaded: the caller's own copy, free to change."""
        return self._decoded(digest).copy()

    def _decode(self, digest: str) -> Image.Image:
        image = Image.open(io.BytesIO(self.get_bytes(digest)))
        image.load()
        return image

    def __contains__(self, digest: str) -> bool:
        try:
            return self.path(digest).exists()
        except NotFound:
            return False
