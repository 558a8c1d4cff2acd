"""User datasets for "train on your own videos": what a user points at (footage.py), Movie Gen's
aspect x duration buckets (buckets.py), the encode pass into sharded latents and text embeddings
(encode.py), and the shards read back for training with one bucket per batch (shards.py)."""
