"""``padiff.interfaces.diff_utils``: ``default_loss``, the loss ``auto_diff`` takes when given none."""

from padiff_graph.compat.autodiff import default_loss

__all__ = ["default_loss"]
