"""Concept clusters: spherical k-means over a run's embeddings, the within-cluster similarity search and the
cluster quotas that SemDeDup and DBP are built on."""
