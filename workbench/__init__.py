"""workbench: a CPU inference engine for decoder-only LLMs that can be traced and seen."""

__version__ = "0.1.0"
