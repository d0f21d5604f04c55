"""Ad platforms behind the :class:`~connectors.ads.base.AdPlatform` seam."""
