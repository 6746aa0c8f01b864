"""``padiff.checker``: the offline checks over dump folders."""

from padiff_graph.compat.checks import check_grads, check_params, check_report, check_weights

__all__ = ["check_grads", "check_params", "check_report", "check_weights"]
