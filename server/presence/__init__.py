"""Phoenix.Presence for gossipy: who is on each topic, replicated across the cluster.

``state`` is the pure replicated state (a CRDT, no I/O); a tracker that owns its timers and
ships its deltas over pubsub will drive it.
"""
