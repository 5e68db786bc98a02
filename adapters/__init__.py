"""Adapter methods (LoRA, AdaLoRA, prefix, bottleneck) and the baselines, behind `adapters.catalog.METHODS`.

Kept import-free so the CLI's `--help` does not load torch.
"""
