"""The notebook face of workbench: `Dashboard` (ipywidgets + plotly FigureWidgets)."""

from workbench.ui.dashboard import Dashboard

__all__ = ["Dashboard"]
