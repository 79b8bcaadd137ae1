"""Phoenix Channels for Tornado: what an app writes against (Channel, Reply, JoinRefused)."""

from .channel import Channel, JoinRefused, Reply

__all__ = ["Channel", "JoinRefused", "Reply"]
