"""``padiff-graph demo``: the whole pipeline on the bundled pair (``demo_models.py``)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.rule import Rule

import padiff_graph.cli.demo_models as models
from padiff_graph.frameworks import quiet_framework_imports


def run_demo(console: Console) -> int:
    """Map, check, copy and diff the bundled pair, then find the planted fault.

    Returns the exit code: 0 if the pipeline behaved as documented.
    """
    from padiff_graph import api
    from padiff_graph.report.terminal import print_diff, print_findings, print_map, summary_line

    started = time.perf_counter()
    with quiet_framework_imports():
        base, inputs = models.base()
        raw, _ = models.raw()
    console.print(Rule("1. suggest-map: which layer is which"))
    layer_map = api.suggest_map(base, raw, inputs)
    print_map(console, layer_map)
    console.print(Rule("2. check: what an order-based copy (PaDiff) would trip on"))
    findings = api.preflight(base, raw, layer_map)
    print_findings(console, findings)
    console.print(summary_line(findings))
    console.print(Rule("3. assign weights through the map (verified bit for bit)"))
    copied = api.assign_weights(base, raw, layer_map)
    console.print(f"copied {copied.tensors} tensors over {copied.layer_pairs} layer pairs")
    console.print(Rule("4. diff: forward and backward, layer by layer"))
    aligned = api.diff(base, raw, inputs, layer_map)
    print_diff(console, aligned)
    console.print(Rule("5. the same port with the tanh-approximate GELU planted"))
    faulty, _ = models.raw_faulty()
    faulty_findings = api.preflight(base, faulty)
    print_findings(console, [f for f in faulty_findings if f.code.value == "config-mismatch"])
    report = api.diff(base, faulty, inputs)
    print_diff(console, report, *api.export_pair(base, faulty))
    found = report.first_divergence is not None and report.first_divergence.base.endswith(".act")
    console.print(Rule())
    behaved = aligned.ok and found
    verdict = "[bold green]demo passed[/]" if behaved else "[bold red]demo did not behave as documented[/]"
    console.print(f"{verdict} in {time.perf_counter() - started:.1f} s")
    return 0 if behaved else 1
