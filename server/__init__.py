"""gossipy: Phoenix Channels over Tornado, clustered without an external service."""
