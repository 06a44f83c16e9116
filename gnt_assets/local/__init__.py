"""Local backends and the deterministic sample-data generators behind the local profile."""
