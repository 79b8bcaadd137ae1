"""gossipy's benchmark (bench/run.py): fan-out across the cluster, side by side with the Redis way."""
