"""Image generators behind the :class:`~connectors.images.base.ImageGenerator` seam."""
