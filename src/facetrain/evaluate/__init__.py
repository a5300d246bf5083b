"""Measure embeddings: LFW-protocol verification."""
