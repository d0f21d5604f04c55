"""The outside world behind small seams: ad platforms (``connectors.ads``) and
image generators (``connectors.images``)."""
