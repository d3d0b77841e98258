"""cotspec: specialize small language models for multi-step reasoning (Fu et al., ICML 2023)."""

__version__ = "0.1.0"
