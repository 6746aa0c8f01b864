"""The ``padiff-graph`` command.

Exit codes: 0 aligned and no error findings, 1 divergence or error findings,
2 usage or input error (one line on stderr; the full text and traceback only
with ``--debug``). ``--debug``, ``-q`` and ``--json`` are accepted before the
subcommand or after it.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from padiff_graph.errors import PadiffGraphError
from padiff_graph.run import DEFAULT_BUDGET_MIB

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])
_state = {"debug": False}


def _console(quiet: bool = False) -> Console:
    from rich.console import Console

    return Console(quiet=quiet, highlight=False, soft_wrap=False)


@contextmanager
def _progress(quiet: bool) -> Iterator[None]:
    """A progress bar on stderr for the long steps, when a person watches a terminal."""
    from rich.console import Console

    from padiff_graph.cli.progress_bar import RichReporter
    from padiff_graph.core.progress import reporting

    console = Console(stderr=True)
    with reporting(RichReporter(console) if console.is_terminal and not quiet else None):
        yield


def _global(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """A flag given after the subcommand, or before it (on the group)."""
    return value or bool(ctx.find_root().params.get(param.name or ""))


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _state["debug"] = True


_DEBUG_HELP = "Show the full error text and tracebacks of errors in your models and factories."
_debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug, help=_DEBUG_HELP
)
_quiet_option = click.option(
    "-q", "--quiet", is_flag=True, callback=_global, help="Print nothing; the exit code tells."
)
_json_option = click.option(
    "--json", "as_json", is_flag=True, callback=_global, help="Print the result as JSON (docs/json.md)."
)
_html_option = click.option(
    "--html", "html_file", type=click.Path(dir_okay=False), help="Also write a self-contained HTML report here."
)
_accept_guesses_option = click.option(
    "--accept-guesses",
    is_flag=True,
    help="Copy through pairs and layouts only definition order or shapes decided (ambiguous-*) instead of stopping.",
)


def _errors(command: F) -> F:
    """Turn padiff_graph errors into one line on stderr and exit code 2 (the full text with ``--debug``)."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PadiffGraphError as error:
            if _state["debug"]:
                traceback.print_exception(error)
                click.echo(f"error: {error}", err=True)
            else:
                click.echo(f"error: {' '.join(str(error).split())}", err=True)
            if error.__cause__ is not None and not _state["debug"]:
                click.echo("(run with --debug for the full text and traceback)", err=True)
            sys.exit(error.exit_code)

    return _debug_option(run)  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help=_DEBUG_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code tells (suggest-map, check, diff).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (check, diff, compare).")
@click.version_option(package_name="padiff-graph")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool, as_json: bool) -> None:
    """Why do a PaddlePaddle model and a PyTorch model disagree?

    Models are named path/to/file.py:factory or package.module:factory; a
    factory returns the model or (model, inputs). Each factory's inputs are
    its own model's; when only one factory gives inputs, both models get
    them. Weights flow BASE -> RAW.
    """
    _state["debug"] = debug
    command = main.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
    accepted = {param.name for param in command.params} if command is not None else set()
    for name, flag, given in (("quiet", "-q", quiet), ("as_json", "--json", as_json)):
        if given and command is not None and name not in accepted:
            raise click.UsageError(f"{ctx.invoked_subcommand} has no {flag} option")


def _load_pair(base: str, raw: str) -> tuple[Any, Any, Any]:
    """Both models, and their inputs: each factory's for its own model, one side's for both if the other gives none."""
    from padiff_graph.cli.loading import load_model
    from padiff_graph.frameworks.inputs import InputPair

    loaded_base, loaded_raw = load_model(base), load_model(raw)
    if loaded_base.inputs is None or loaded_raw.inputs is None:
        inputs = loaded_raw.inputs if loaded_base.inputs is None else loaded_base.inputs
    else:
        inputs = InputPair(loaded_base.inputs, loaded_raw.inputs)
    return loaded_base.model, loaded_raw.model, inputs


def _wrote(path: str, quiet: bool, as_json: bool) -> None:
    """Say a report was written (not with ``--json``: stdout holds the JSON document alone)."""
    if not (quiet or as_json):
        _console().print(f"wrote {path}")


def _load_map(path: str | None) -> Any:
    if path is None:
        return None
    from padiff_graph.layermap import LayerMap

    return LayerMap.load(path)


@main.command("suggest-map")
@click.argument("base")
@click.argument("raw")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the map here (default: print it).")
@click.option("--format", "output_format", type=click.Choice(["yaml", "padiff"]), default="yaml", show_default=True)
@click.option("--no-trace", is_flag=True, help="Do not run the models to learn their call order.")
@_quiet_option
@_errors
def suggest_map_command(
    base: str, raw: str, output: str | None, output_format: str, no_trace: bool, quiet: bool
) -> None:
    """Propose the layer map from BASE to RAW."""
    from padiff_graph import api
    from padiff_graph.core.atomic import write_atomically
    from padiff_graph.report.terminal import print_map

    base_model, raw_model, inputs = _load_pair(base, raw)
    with _progress(quiet or output is None):
        base_tree, raw_tree = api.export_pair(base_model, raw_model, None if no_trace else inputs)
        layer_map = api.match_trees(base_tree, raw_tree)
    if output_format == "yaml":
        text = layer_map.dumps()
    else:
        from padiff_graph.layermap.padiff_code import padiff_code

        text = padiff_code(layer_map, base_tree, raw_tree)
    if output is None:
        click.echo(text, nl=False)
        return
    write_atomically(Path(output), text)
    console = _console(quiet)
    print_map(console, layer_map, (base_tree, raw_tree))
    console.print(f"wrote {output}")


@main.command()
@click.argument("base")
@click.argument("raw")
@click.option(
    "--map", "map_file", type=click.Path(dir_okay=False), help="Layer map file to check instead of proposing one."
)
@_json_option
@_html_option
@_quiet_option
@_errors
def check(base: str, raw: str, map_file: str | None, as_json: bool, html_file: str | None, quiet: bool) -> None:
    """Pre-flight check: what would break an order-based weight copy, and what to do."""
    from padiff_graph import api
    from padiff_graph.checks import preflight_trees
    from padiff_graph.core.findings import has_errors
    from padiff_graph.report.document import check_document, dumps
    from padiff_graph.report.terminal import print_check

    layer_map = _load_map(map_file)
    base_model, raw_model, inputs = _load_pair(base, raw)
    with _progress(quiet or as_json):
        base_tree, raw_tree = api.export_pair(base_model, raw_model, inputs)
        if layer_map is None:
            layer_map = api.match_trees(base_tree, raw_tree)
        layer_map = api.expand_inits(base_tree, raw_tree, layer_map, api.DEFAULT_REGISTRY)
        layer_map = api.probe_with_inputs(base_model, raw_model, layer_map, inputs, (base_tree, raw_tree))
        findings = preflight_trees(base_tree, raw_tree, layer_map)
    if html_file is not None:
        from padiff_graph.report.html import write_html

        write_html(html_file, base_tree, raw_tree, layer_map, findings)
        _wrote(html_file, quiet, as_json)
    if as_json:
        click.echo(dumps(check_document(layer_map, findings)))
    elif not quiet:
        print_check(_console(), base_tree, raw_tree, layer_map, findings)
    sys.exit(1 if has_errors(findings) else 0)


@main.command()
@click.argument("base")
@click.argument("raw")
@click.option("--map", "map_file", type=click.Path(dir_okay=False), help="Layer map file (default: proposed).")
@click.option("--atol", type=float, help="Absolute tolerance: compare elementwise (default: each layer's own error).")
@click.option("--rtol", type=float, help="Relative tolerance: compare elementwise (default: each layer's own error).")
@click.option("--mode", type=click.Choice(["strict", "mean"]), default="strict", show_default=True)
@click.option("--forward-only", is_flag=True, help="Compare the forward pass only.")
@click.option("--single-step", is_flag=True, help="Feed each raw layer the base's inputs: find every diverging layer.")
@click.option("--op-level", is_flag=True, help="Name the first differing framework API call in each diverging layer.")
@click.option("--disable-random", is_flag=True, help="Switch dropout and other random layers off for the run.")
@click.option(
    "--memory-budget",
    type=click.FloatRange(min=0),
    default=DEFAULT_BUDGET_MIB,
    show_default=True,
    help="MiB of base records held in memory in strict mode; past it they wait in a file in TMPDIR ('inf': never).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also show info findings (what is already taken care of).")
@_json_option
@_html_option
@_quiet_option
@_errors
def diff(
    base: str,
    raw: str,
    map_file: str | None,
    atol: float | None,
    rtol: float | None,
    mode: str,
    forward_only: bool,
    single_step: bool,
    op_level: bool,
    disable_random: bool,
    memory_budget: float,
    verbose: bool,
    as_json: bool,
    html_file: str | None,
    quiet: bool,
) -> None:
    """Copy BASE's weights into RAW, run both and name the first diverging layer."""
    from padiff_graph import api
    from padiff_graph.core.findings import has_errors
    from padiff_graph.errors import InputError
    from padiff_graph.report.document import diff_document, dumps
    from padiff_graph.report.terminal import print_diff

    layer_map = _load_map(map_file)
    base_model, raw_model, inputs = _load_pair(base, raw)
    if inputs is None:
        raise InputError("diff needs inputs: let a factory return (model, inputs), inputs being a dict of arrays")
    with _progress(quiet or as_json):
        report = api.diff(
            base_model,
            raw_model,
            inputs,
            layer_map,
            atol=atol,
            rtol=rtol,
            mode=mode,
            backward=not forward_only,
            random_ops="disable" if disable_random else "error",
            single_step=single_step,
            op_level=op_level,
            memory_budget_mib=memory_budget,
        )
    if html_file is not None:
        from padiff_graph.report.html import write_html

        base_tree, raw_tree = api.export_pair(base_model, raw_model)
        write_html(html_file, base_tree, raw_tree, report.layer_map, report.findings, report)
        _wrote(html_file, quiet, as_json)
    if as_json:
        click.echo(dumps(diff_document(report)))
    elif not quiet:
        print_diff(_console(), report, *api.export_pair(base_model, raw_model), verbose=verbose)
    sys.exit(0 if report.ok and not has_errors(report.findings) else 1)


@main.command("convert-weights")
@click.argument("base")
@click.argument("raw")
@click.option("--map", "map_file", type=click.Path(dir_okay=False), help="Layer map file (default: proposed).")
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(dir_okay=False),
    help="BASE's state dict: .pt/.pth/.bin (torch), .pdparams (paddle) or .safetensors.",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write RAW's state dict.")
@click.option(
    "--memory-budget",
    type=click.FloatRange(min=0),
    help="MiB of converted tensors held in memory; past it they go through a scratch file beside the output "
    "(default: half the memory available).",
)
@_accept_guesses_option
@_errors
def convert_weights(
    base: str,
    raw: str,
    map_file: str | None,
    checkpoint: str,
    output: str,
    memory_budget: float | None,
    accept_guesses: bool,
) -> None:
    """Convert a checkpoint of BASE into one RAW loads, tensor by tensor (docs/conversions.md).

    The factories' inputs, when they return some, decide what definition
    order alone cannot; a pair or layout still only guessed stops the conversion.
    """
    from padiff_graph.assign.checkpoints import convert_checkpoint

    layer_map = _load_map(map_file)
    base_model, raw_model, inputs = _load_pair(base, raw)
    report = convert_checkpoint(
        base_model,
        raw_model,
        checkpoint,
        output,
        layer_map,
        inputs=inputs,
        accept_guesses=accept_guesses,
        memory_budget_mib=memory_budget,
    )
    console = _console()
    console.print(f"wrote {report.output}: {report.tensors} tensors, {report.bytes / 2**20:.1f} MiB; {report.verified}")
    if report.outputs is not None:
        console.print(report.outputs.describe(), style=None if report.outputs.agree else "bold red")
    if report.filled:
        kinds = sorted({name.rpartition(".")[2] for name in report.filled})
        console.print(f"zero-filled {len(report.filled)} tensors the base has no counterpart for ({', '.join(kinds)})")
    if report.unused:
        more = f" (and {len(report.unused) - 8} more)" if len(report.unused) > 8 else ""
        console.print(f"[yellow]checkpoint tensors no raw tensor needs:[/] {', '.join(report.unused[:8])}{more}")
    if report.outputs is not None and not report.outputs.agree:
        sys.exit(1)


@main.command()
@click.argument("base_dir", type=click.Path(file_okay=False))
@click.argument("raw_dir", type=click.Path(file_okay=False))
@click.option("--map", "map_file", type=click.Path(dir_okay=False), help="Layer map file (default: proposed).")
@click.option("--atol", type=float, help="Absolute tolerance: compare elementwise (default: each layer's own error).")
@click.option("--rtol", type=float, help="Relative tolerance: compare elementwise (default: each layer's own error).")
@click.option("--mode", type=click.Choice(["strict", "mean"]), default="strict", show_default=True)
@_json_option
@_html_option
@_errors
def compare(
    base_dir: str,
    raw_dir: str,
    map_file: str | None,
    atol: float | None,
    rtol: float | None,
    mode: str,
    as_json: bool,
    html_file: str | None,
) -> None:
    """Compare two dumps (padiff_graph.dump, Recording) step by step, without the models.

    Runs split alike are compared rank by rank; a sharded run is merged by
    the placements recorded with it (docs/sharded.md).
    """
    from padiff_graph.core.findings import has_errors
    from padiff_graph.offline.compare import compare_dumps
    from padiff_graph.offline.reader import load_dump
    from padiff_graph.report.document import diff_document, dumps
    from padiff_graph.report.terminal import print_diff

    report = compare_dumps(base_dir, raw_dir, _load_map(map_file), atol=atol, rtol=rtol, mode=mode)
    base_tree = load_dump(base_dir).tree()
    if html_file is not None:
        from padiff_graph.report.html import write_html

        write_html(html_file, base_tree, load_dump(raw_dir).tree(), report.layer_map, report.findings, report)
    if as_json:
        click.echo(dumps(diff_document(report)))
    else:
        print_diff(_console(), report, base_tree)
    sys.exit(0 if report.ok and not has_errors(report.findings) else 1)


@main.command()
@click.argument("model")
@click.option("--depth", type=int, help="Show at most this many levels.")
@_errors
def show(model: str, depth: int | None) -> None:
    """Print MODEL's layer tree with tensor shapes."""
    from padiff_graph import api
    from padiff_graph.cli.loading import load_model
    from padiff_graph.report.terminal import print_tree

    loaded = load_model(model)
    with _progress(False):
        tree = api.export_tree(loaded.model)
    print_tree(_console(), tree, depth)


@main.command()
@_errors
def demo() -> None:
    """Run the whole pipeline on the bundled example pair."""
    from padiff_graph.cli.demo import run_demo

    sys.exit(run_demo(_console()))


if __name__ == "__main__":  # pragma: no cover
    main()
