"""Blocks shared by several architectures, one concept per module (import them from their submodules)."""
