"""Reading an HTTP ``Accept`` header: the weight (``q``) the client gives each media type."""

from __future__ import annotations


def media_weights(accept: str | None) -> dict[str, float]:
    """Each media type ``accept`` lists (lower-case) with its highest ``q`` (1 when unstated)."""
    weights: dict[str, float] = {}
    for part in (accept or "").split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[media.lower()] = max(weight, weights.get(media.lower(), 0.0))
    return weights


__all__ = ["media_weights"]
