"""Damaged files: every file a user hands the tool ends in the right result or its own one-line error.

Each test damages one file of a valid set (byte flips, truncation, deleted,
duplicated and overwritten spans, inserted bytes, shuffled lines) and runs
the reader through the Python API or the CLI. Anything but the undamaged
result or a :class:`PadiffGraphError` (exit code 2, one line, no traceback)
fails. Examples are derandomized and bounded, the models tiny and built
once, so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dump import paddle_like, record_own_loop, torch_model, train_torch

from padiff_graph import DumpError, InputError, LayerMap, LayerMapError, PadiffGraphError, compare_dumps, suggest_map
from padiff_graph.assign.checkpoints import ConversionReport, convert_checkpoint, open_checkpoint
from padiff_graph.cli import main
from padiff_graph.cli.loading import load_model
from padiff_graph.core.tensorfile import Stored, write_safetensors
from padiff_graph.offline.integrity import sealed_json
from padiff_graph.report.document import diff_document, dumps
from padiff_graph.run.results import DiffReport

DAMAGES = ("flip", "truncate", "delete", "duplicate", "overwrite", "insert", "shuffle")


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one to three damages of the kinds in :data:`DAMAGES`, never left as it was."""
    original = data
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(DAMAGES))
        start = draw(st.integers(0, max(len(data) - 1, 0)))
        stop = draw(st.integers(start, min(len(data), start + 64)))
        if kind == "flip" and data:
            data = data[:start] + bytes([data[start] ^ draw(st.integers(1, 255))]) + data[start + 1 :]
        elif kind == "truncate":
            data = data[:start]
        elif kind == "delete":
            data = data[:start] + data[stop:]
        elif kind == "duplicate":
            data = data[:stop] + data[start:stop] + data[stop:]
        elif kind == "overwrite":
            data = data[:start] + draw(st.binary(min_size=stop - start, max_size=stop - start)) + data[stop:]
        elif kind == "insert":
            data = data[:start] + draw(st.binary(min_size=1, max_size=16)) + data[start:]
        elif kind == "shuffle":
            data = b"\n".join(draw(st.permutations(data.split(b"\n"))))
    return data if data != original else original[:-1]


def bounded(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def one_line(message: str) -> None:
    assert message and "\n" not in message.strip() and "Traceback" not in message, message


# --- dumps -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dumps_pair(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A torch ``dump`` and a paddle ``Recording`` of the same training (two steps), their map and result.

    ``legacy`` holds the same dumps as written before dumps carried checksums (format version 1).
    """
    root = tmp_path_factory.mktemp("dumps")
    base = torch_model()
    raw = paddle_like(base)
    layer_map = suggest_map(base, raw)
    layer_map.save(root / "map.yaml")
    train_torch(root, base, steps=2)
    record_own_loop(raw, "paddle", root / "paddle", saved_steps=(0, 1))
    files = sorted(str(p.relative_to(root)) for p in root.glob("*/**/*") if p.is_file())
    report = compare_dumps(root / "torch", root / "paddle", layer_map)
    assert report.ok and len(files) == 14, files
    legacy = tmp_path_factory.mktemp("legacy")
    for side in ("torch", "paddle"):
        shutil.copytree(root / side, legacy / side)
    for path in legacy.glob("*/**/*.json"):
        content = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("crc32", "files")}
        content["version"] = 1
        if "records" in content:
            content["records"] = [{k: v for k, v in record.items() if k != "crc32"} for record in content["records"]]
        path.write_text(json.dumps(content, indent=1))
    return {"root": root, "legacy": legacy, "map": layer_map, "files": files, "result": dumps(diff_document(report))}


@contextmanager
def damaged_file(root: Path, files: list[str], data: st.DataObject) -> Iterator[Path]:
    """Damage one of ``files`` under ``root`` for the block, then put it back as it was."""
    target = root / data.draw(st.sampled_from(files), label="file")
    content = target.read_bytes()
    target.write_bytes(data.draw(damaged(content), label="damaged"))
    try:
        yield target
    finally:
        target.write_bytes(content)


def compare_in(root: Path, pair: dict) -> DiffReport:
    return compare_dumps(root / "torch", root / "paddle", pair["map"])


@bounded(150)
@given(data=st.data())
def test_a_damaged_dump_is_reported_naming_the_file_or_compares_as_before(dumps_pair, data) -> None:
    with damaged_file(dumps_pair["root"], dumps_pair["files"], data) as target:
        try:
            report = compare_in(dumps_pair["root"], dumps_pair)
        except DumpError as error:
            one_line(str(error))
            assert str(target) in str(error)
            return
    assert dumps(diff_document(report)) == dumps_pair["result"]  # only damage that changed no value gets here


@bounded(100)
@given(data=st.data())
def test_a_damaged_dump_without_checksums_is_reported_or_compared(dumps_pair, data) -> None:
    with damaged_file(dumps_pair["legacy"], dumps_pair["files"], data) as target:
        try:
            compare_in(dumps_pair["legacy"], dumps_pair)
        except DumpError as error:
            one_line(str(error))
            assert str(target) in str(error)


@bounded(40)
@given(data=st.data())
def test_compare_on_a_damaged_dump_exits_2_with_one_line(dumps_pair, data) -> None:
    root = dumps_pair["root"]
    with damaged_file(root, dumps_pair["files"], data):
        arguments = ["compare", str(root / "torch"), str(root / "paddle"), "--map", str(root / "map.yaml")]
        result = CliRunner().invoke(main, arguments)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.output


@bounded(60)
@given(data=st.data())
def test_a_damaged_layer_map_is_refused_naming_the_file_or_compares_through_what_it_says(dumps_pair, data) -> None:
    root = dumps_pair["root"]
    with damaged_file(root, ["map.yaml"], data) as target:
        try:
            layer_map = LayerMap.load(target)
        except LayerMapError as error:
            one_line(str(error))
            assert str(target) in str(error)
            return
    try:
        compare_dumps(root / "torch", root / "paddle", layer_map)
    except PadiffGraphError as error:  # a map that parses but names what the dumped models lack
        one_line(str(error))


@bounded(30)
@given(data=st.data())
def test_compare_with_a_damaged_layer_map_exits_2_with_one_line_or_compares(dumps_pair, data) -> None:
    root = dumps_pair["root"]
    with damaged_file(root, ["map.yaml"], data) as target:
        arguments = ["compare", str(root / "torch"), str(root / "paddle"), "--map", str(target)]
        result = CliRunner().invoke(main, arguments)
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.output


def test_a_truncated_tensor_file_is_named_and_exits_2(dumps_pair) -> None:
    root = dumps_pair["root"]
    tensors = root / "torch" / "step_1" / "rank_0" / "tensors.npz"
    content = tensors.read_bytes()
    try:
        tensors.write_bytes(content[:-100])
        result = CliRunner().invoke(main, ["compare", str(root / "torch"), str(root / "paddle")])
    finally:
        tensors.write_bytes(content)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tensors}: damaged dump file: truncated to {len(content) - 100} bytes, its manifest says "
        f"{len(content)}; copy it again or dump again\n"
    )


# --- checkpoints -------------------------------------------------------------------------------------------


MODELS = """
import paddle
import torch


def torch_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3))


def paddle_net():
    paddle.seed(0)
    return paddle.nn.Sequential(
        paddle.nn.Linear(4, 6), paddle.nn.BatchNorm1D(6), paddle.nn.ReLU(), paddle.nn.Linear(6, 3)
    )
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One checkpoint of each format, the models they convert between, and the undamaged conversions."""
    root = tmp_path_factory.mktemp("checkpoints")
    (root / "nets.py").write_text(MODELS)
    models = {factory: load_model(f"{root / 'nets.py'}:{factory}").model for factory in ("torch_net", "paddle_net")}
    base_torch, base_paddle = models["torch_net"], models["paddle_net"]
    torch.save(base_torch.state_dict(), root / "net.pt")
    paddle.save(base_paddle.state_dict(), str(root / "net.pdparams"))
    state = {name: Stored(value.numpy(), str(value.dtype)[6:]) for name, value in base_torch.state_dict().items()}
    with (root / "net.safetensors").open("wb") as stream:
        write_safetensors(
            stream, [(name, value.shape, value.dtype) for name, value in state.items()], iter(state.items())
        )
    jobs = {
        "net.pt": ("torch_net", "paddle_net", "out.pdparams"),
        "net.safetensors": ("torch_net", "paddle_net", "out.safetensors"),
        "net.pdparams": ("paddle_net", "torch_net", "out.pt"),
    }
    outputs = {name: tensors_in(convert(root, name, jobs, models).output) for name in jobs}
    return {"root": root, "jobs": jobs, "models": models, "outputs": outputs}


def convert(root: Path, name: str, jobs: dict, models: dict) -> ConversionReport:
    base, raw, output = jobs[name]
    return convert_checkpoint(models[base], models[raw], root / name, root / output)


def tensors_in(path: Path) -> dict[str, tuple]:
    reader = open_checkpoint(path)
    try:
        return {name: (*reader.info(name), reader.read(name).array.tobytes()) for name in reader.names()}
    finally:
        reader.close()


@bounded(150)
@given(data=st.data())
def test_a_damaged_checkpoint_is_refused_naming_the_file_or_converts_what_it_holds(checkpoints, data) -> None:
    root, jobs = checkpoints["root"], checkpoints["jobs"]
    with damaged_file(root, list(jobs), data) as target:
        try:
            report = convert(root, target.name, jobs, checkpoints["models"])
        except PadiffGraphError as error:
            one_line(str(error))
            assert str(target) in str(error)
            return
        found, expected = tensors_in(report.output), checkpoints["outputs"][target.name]
    assert {name: value[:2] for name, value in found.items()} == {name: value[:2] for name, value in expected.items()}
    if target.suffix == ".pt":  # torch's zip format checks each record's CRC-32; the others hold no checksum
        assert found == expected


@bounded(30)
@given(data=st.data())
def test_convert_weights_on_a_damaged_checkpoint_exits_2_with_one_line(checkpoints, data) -> None:
    root, jobs = checkpoints["root"], checkpoints["jobs"]
    with damaged_file(root, list(jobs), data) as target:
        base, raw, output = jobs[target.name]
        models = [f"{root / 'nets.py'}:{factory}" for factory in (base, raw)]
        result = CliRunner().invoke(
            main, ["convert-weights", *models, "--checkpoint", str(target), "-o", str(root / output)]
        )
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert str(target) in result.stderr and "Traceback" not in result.output


def test_a_dump_without_checksums_still_loads_and_compares_alike(dumps_pair) -> None:
    report = compare_dumps(dumps_pair["legacy"] / "torch", dumps_pair["legacy"] / "paddle", dumps_pair["map"])
    assert dumps(diff_document(report)) == dumps_pair["result"]


def test_a_missing_step_is_named(dumps_pair) -> None:
    folder = dumps_pair["root"] / "paddle" / "step_1" / "rank_0"
    folder.rename(folder.with_name("moved"))
    try:
        with pytest.raises(DumpError, match=r"paddle/step_1/rank_0: step 1 of rank 0 is missing"):
            compare_in(dumps_pair["root"], dumps_pair)
    finally:
        folder.with_name("moved").rename(folder)


def test_safetensors_spans_must_tile_the_data(tmp_path) -> None:
    path = tmp_path / "net.safetensors"

    def write(header: dict, data: bytes) -> None:
        text = json.dumps(header).encode()
        path.write_bytes(len(text).to_bytes(8, "little") + text + data)

    write(
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        },
        bytes(8),
    )
    with pytest.raises(
        InputError, match=r"net.safetensors: damaged safetensors header: tensor 'b' \(bytes 4-8 of the data\) overlaps"
    ):
        open_checkpoint(path)
    write({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8))
    with pytest.raises(InputError, match=r"tensor 'a' .* leaves bytes 0-4 unused"):
        open_checkpoint(path)
    write({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8))
    with pytest.raises(InputError, match=r"tensor 'a' spans bytes 0-8 of the data, but float32 \[3\] takes 12"):
        open_checkpoint(path)
    write({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8))
    with pytest.raises(
        InputError, match=r"net.safetensors: truncated: the header announces 16 bytes of tensor data, the file holds 8"
    ):
        open_checkpoint(path)


def test_a_pdparams_array_of_no_tensor_dtype_is_named_with_its_file(tmp_path) -> None:
    paddle.save({"w": np.zeros(2, np.complex64)}, str(tmp_path / "net.pdparams"))
    with pytest.raises(InputError, match=r"net.pdparams: tensor 'w': arrays of dtype complex64"):
        open_checkpoint(tmp_path / "net.pdparams")


def test_an_npz_file_of_another_step_copied_in_its_place_is_named(dumps_pair) -> None:
    folders = [dumps_pair["root"] / "torch" / f"step_{step}" / "rank_0" for step in (0, 1)]
    content = (folders[1] / "tensors.npz").read_bytes()
    (folders[1] / "tensors.npz").write_bytes((folders[0] / "tensors.npz").read_bytes())  # same names, same size
    try:
        with pytest.raises(DumpError, match=r"step_1/rank_0/tensors.npz: .* is not the one its manifest lists"):
            compare_in(dumps_pair["root"], dumps_pair)
    finally:
        (folders[1] / "tensors.npz").write_bytes(content)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda header: header.pop("crc32"), r"rank_0.json: damaged dump file: its checksum \('crc32'\) is missing"),
        (lambda header: header.update(version=3), r"rank_0.json: dump format version 3; this padiff_graph reads"),
        (lambda header: header.update(version=1), r"rank_0.json: damaged dump file: its content changed"),
    ],
)
def test_a_header_without_its_checksum_or_of_a_newer_format_is_refused(dumps_pair, change, message) -> None:
    path = dumps_pair["root"] / "torch" / "rank_0.json"
    content = path.read_text()
    header = json.loads(content)
    change(header)
    path.write_text(json.dumps(header))
    try:
        with pytest.raises(DumpError, match=message):
            compare_in(dumps_pair["root"], dumps_pair)
    finally:
        path.write_text(content)


def test_a_malformed_placement_is_damage_named_with_its_record(dumps_pair) -> None:
    """A sharded record's layout is read as carefully as the rest of its manifest (sealed or not)."""
    for root in (dumps_pair["legacy"], dumps_pair["root"]):
        manifest_file = root / "paddle" / "step_0" / "rank_0" / "manifest.json"
        content = manifest_file.read_text()
        manifest = json.loads(content)
        manifest["records"][0]["layout"] = {"placements": "shard(0)", "mesh": [2], "coordinate": [0], "shape": [4]}
        manifest_file.write_text(sealed_json(manifest) if "crc32" in manifest else json.dumps(manifest))
        try:
            with pytest.raises(DumpError, match="the layout of record"):
                compare_in(root, dumps_pair)
        finally:
            manifest_file.write_text(content)
