"""convert-weights: checkpoints converted tensor by tensor, loaded by the other model, never running code."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch
from click.testing import CliRunner
from test_conversions import PaddleSequenceNet, TorchSequenceNet, randomize

from padiff_graph import AssignError, InputError
from padiff_graph.assign.checkpoints import convert_checkpoint, open_checkpoint
from padiff_graph.cli import main
from padiff_graph.core.tensorfile import Stored, write_safetensors

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import resnet18 as resnet_example  # noqa: E402

IMAGE = resnet_example.inputs()["x"]


def paddle_resnet() -> paddle.nn.Layer:
    model, _ = resnet_example.base()
    return model


def torch_resnet() -> torch.nn.Module:
    model, _ = resnet_example.raw()
    return model


def logits(model) -> np.ndarray:
    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            return model(torch.from_numpy(IMAGE)).numpy()
    return model(paddle.to_tensor(IMAGE)).numpy()


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def spec(factory: str) -> str:
    return f"{EXAMPLES / 'resnet18.py'}:{factory}"


def test_paddle_resnet18_checkpoint_becomes_one_torch_loads(tmp_path: Path) -> None:
    source = paddle_resnet()
    randomize(source, 11)  # statistics included, so a missed BatchNorm conversion shows
    paddle.save(source.state_dict(), str(tmp_path / "resnet18.pdparams"))
    code, output = cli(
        "convert-weights", spec("base"), spec("raw"), "--checkpoint", str(tmp_path / "resnet18.pdparams"),
        "-o", str(tmp_path / "resnet18.pt"),
    )  # fmt: skip
    assert code == 0, output
    assert "loaded into the raw model" in output
    converted = torch_resnet()
    converted.load_state_dict(torch.load(tmp_path / "resnet18.pt", weights_only=True))
    np.testing.assert_allclose(logits(converted), logits(source), rtol=1e-4, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet18.pdparams", "resnet18.pt"]  # no scratch left


@pytest.mark.parametrize("budget", [[], ["--memory-budget", "0"]], ids=["in-memory", "scratch-file"])
def test_torch_resnet18_checkpoint_becomes_one_paddle_loads(tmp_path: Path, budget: list[str]) -> None:
    source = torch_resnet()
    randomize(source, 12)
    torch.save(source.state_dict(), tmp_path / "resnet18.pt")
    code, output = cli(
        "convert-weights", spec("raw"), spec("base"), "--checkpoint", str(tmp_path / "resnet18.pt"),
        "-o", str(tmp_path / "resnet18.pdparams"), *budget,
    )  # fmt: skip
    assert code == 0, output
    assert "loaded into the raw model" in output
    converted = paddle_resnet()
    converted.set_state_dict(paddle.load(str(tmp_path / "resnet18.pdparams")))
    np.testing.assert_allclose(logits(converted), logits(source), rtol=1e-4, atol=1e-4)


TOKENS = np.random.default_rng(3).integers(0, 12, (2, 5)).astype(np.int64)


def run_sequence(model) -> np.ndarray:
    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            return model.eval()(torch.from_numpy(TOKENS)).numpy()
    model.eval()
    return model(paddle.to_tensor(TOKENS)).numpy()


@pytest.mark.parametrize("torch_is_base", [True, False], ids=["torch-to-paddle", "paddle-to-torch"])
def test_fused_attention_recurrent_and_transformer_layers_convert_through_safetensors(
    tmp_path: Path, torch_is_base: bool
) -> None:
    base, raw = (
        (TorchSequenceNet(), PaddleSequenceNet()) if torch_is_base else (PaddleSequenceNet(), TorchSequenceNet())
    )
    randomize(base, 13)
    state = base.state_dict()
    arrays = {k: v.detach().numpy() if torch_is_base else v.numpy() for k, v in state.items()}
    with (tmp_path / "base.safetensors").open("wb") as stream:
        layout = [(k, a.shape, str(a.dtype)) for k, a in arrays.items()]
        write_safetensors(stream, layout, ((k, Stored(a, str(a.dtype))) for k, a in arrays.items()))
    report = convert_checkpoint(base, raw, tmp_path / "base.safetensors", tmp_path / "raw.safetensors")
    assert report.verified == "loaded into the raw model"
    np.testing.assert_allclose(run_sequence(raw), run_sequence(base), rtol=1e-4, atol=1e-5)
    reader = open_checkpoint(tmp_path / "raw.safetensors")
    assert set(reader.names()) == set(raw.state_dict())  # paddle's RNN cell aliases included


def test_bfloat16_bits_are_kept_exactly(tmp_path: Path) -> None:
    base = torch.nn.Sequential(torch.nn.Linear(4, 3)).to(torch.bfloat16)
    torch.save(base.state_dict(), tmp_path / "base.pt")
    raw = paddle.nn.Sequential(paddle.nn.Linear(4, 3))
    raw.to(dtype="bfloat16")
    convert_checkpoint(base, raw, tmp_path / "base.pt", tmp_path / "raw.pdparams")
    expected = base[0].weight.detach().view(torch.int16).numpy().view(np.uint16).T
    np.testing.assert_array_equal(raw[0].weight.view("uint16").numpy(), expected)


def test_models_built_without_memory_are_enough(tmp_path: Path) -> None:
    source = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    torch.save(source.state_dict(), tmp_path / "base.pt")
    with torch.device("meta"):
        base = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    with paddle.LazyGuard():
        raw = paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.LayerNorm(8), paddle.nn.Linear(8, 2))
    report = convert_checkpoint(base, raw, tmp_path / "base.pt", tmp_path / "raw.pdparams")
    assert report.verified.startswith("names and shapes checked")
    with torch.device("meta"):
        back = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    report = convert_checkpoint(raw, back, tmp_path / "raw.pdparams", tmp_path / "back.pt")
    assert report.verified == "loaded into the raw model"  # the meta model took the memory-mapped tensors
    np.testing.assert_array_equal(back[2].weight.detach().numpy(), source[2].weight.detach().numpy())


def test_a_checkpoint_saved_from_a_wrapper_is_found_under_its_prefix(tmp_path: Path) -> None:
    base, raw = torch.nn.Linear(3, 2), paddle.nn.Linear(3, 2)
    torch.save({f"module.{k}": v for k, v in base.state_dict().items()}, tmp_path / "ddp.pt")
    convert_checkpoint(base, raw, tmp_path / "ddp.pt", tmp_path / "raw.pdparams")
    np.testing.assert_array_equal(raw.weight.numpy(), base.weight.detach().numpy().T)


class Boom:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pdparams_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with (tmp_path / "evil.pdparams").open("wb") as stream:
        pickle.dump({"weight": np.zeros((2, 3), np.float32), "bias": Boom(str(marker))}, stream, protocol=4)
    with pytest.raises(InputError, match=r"refusing to load .*evil.pdparams.*(posix|os)\.system"):
        convert_checkpoint(paddle.nn.Linear(3, 2), torch.nn.Linear(3, 2), tmp_path / "evil.pdparams", tmp_path / "o.pt")
    assert not marker.exists()


def test_a_torch_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    torch.save({"weight": torch.zeros(2, 3), "bias": Boom(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="refusing to load"):
        convert_checkpoint(torch.nn.Linear(3, 2), paddle.nn.Linear(3, 2), tmp_path / "evil.pt", tmp_path / "o.pdparams")
    assert not marker.exists()


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2, 3)}, tmp_path / "partial.pt")  # no bias
    (tmp_path / "raw.pdparams").write_bytes(b"previous")
    with pytest.raises(AssignError, match="no tensor for base 'bias'"):
        convert_checkpoint(
            torch.nn.Linear(3, 2), paddle.nn.Linear(3, 2), tmp_path / "partial.pt", tmp_path / "raw.pdparams"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.pt", "raw.pdparams"]
    assert (tmp_path / "raw.pdparams").read_bytes() == b"previous"


def test_output_format_must_be_one_the_raw_model_loads(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "base.pt")
    code, output = cli(
        "convert-weights",
        spec("raw"),
        spec("base"),
        "--checkpoint",
        str(tmp_path / "base.pt"),
        "-o",
        str(tmp_path / "x.pt"),
    )
    assert code == 2 and "a paddle model loads .safetensors, .pdparams" in output


def mlp(framework: str):
    """A small MLP with a LayerNorm: Linear weights transpose between the frameworks, the rest do not."""
    nn = torch.nn if framework == "torch" else paddle.nn
    model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    randomize(model, 5)
    return model


FORMATS_OUT = [
    ("torch", "paddle", "raw.pdparams"),
    ("torch", "paddle", "raw.safetensors"),
    ("paddle", "torch", "raw.pt"),
]


def save_base(model, folder: Path) -> Path:
    if isinstance(model, torch.nn.Module):
        torch.save(model.state_dict(), folder / "base.pt")
        return folder / "base.pt"
    paddle.save(model.state_dict(), str(folder / "base.pdparams"))
    return folder / "base.pdparams"


def tensors_of(path: Path) -> dict[str, tuple]:
    reader = open_checkpoint(path)
    try:
        return {name: (*reader.info(name), reader.read(name).array.tobytes()) for name in reader.names()}
    finally:
        reader.close()


@pytest.mark.parametrize(("base_framework", "raw_framework", "output"), FORMATS_OUT)
def test_in_memory_and_scratch_file_conversions_write_the_same_verified_file(
    tmp_path: Path, base_framework: str, raw_framework: str, output: str
) -> None:
    base = mlp(base_framework)
    checkpoint = save_base(base, tmp_path)
    written = {}
    for budget in (1e6, 0):  # everything fits; nothing fits: through the scratch file
        raw = mlp(raw_framework)
        report = convert_checkpoint(base, raw, checkpoint, tmp_path / f"{budget:g}" / output, memory_budget_mib=budget)
        assert report.verified == "loaded into the raw model"
        assert sorted(p.name for p in report.output.parent.iterdir()) == [output]  # no scratch file left
        written[budget] = tensors_of(report.output)
        np.testing.assert_allclose(run_mlp(raw), run_mlp(base), rtol=1e-5, atol=1e-6)
    assert written[1e6] == written[0]


def run_mlp(model) -> np.ndarray:
    x = np.random.default_rng(3).standard_normal((2, 6)).astype(np.float32)
    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return model(paddle.to_tensor(x)).numpy()


def test_paddle_load_reads_the_converted_pdparams(tmp_path: Path) -> None:
    base = mlp("torch")
    convert_checkpoint(base, mlp("paddle"), save_base(base, tmp_path), tmp_path / "raw.pdparams")
    loaded = paddle.load(str(tmp_path / "raw.pdparams"))
    expected = {k: v.detach().numpy() for k, v in base.state_dict().items()}
    for name in ("0.weight", "2.weight"):
        expected[name] = expected[name].T
    assert sorted(loaded) == sorted(expected)
    for name, value in loaded.items():
        np.testing.assert_array_equal(value.numpy(), expected[name])


@pytest.mark.parametrize(("base_framework", "raw_framework", "output"), FORMATS_OUT)
@pytest.mark.parametrize("budget", [None, 0.0], ids=["in-memory", "scratch-file"])
def test_a_tensor_corrupted_on_its_way_to_the_file_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_framework: str, raw_framework: str, output: str, budget
) -> None:
    import padiff_graph.assign.checkpoints as checkpoints
    from padiff_graph.frameworks import adapter_named

    def corrupted(tensors: dict[str, Stored]) -> dict[str, Stored]:
        value = tensors["2.weight"]
        flipped = value.array.copy()
        flipped.reshape(-1).view(np.uint32)[0] ^= 1  # one bit of one element
        return {**tensors, "2.weight": Stored(flipped, value.dtype)}

    if output.endswith(".safetensors"):
        real_write = checkpoints.write_safetensors

        def write(stream, layout, tensors):
            tensors = dict(tensors)
            if ".scratch." not in stream.name:  # the output, not the scratch file
                tensors = corrupted(tensors)
            real_write(stream, layout, iter(tensors.items()))

        monkeypatch.setattr(checkpoints, "write_safetensors", write)
    else:
        adapter = type(adapter_named(raw_framework))
        real_save = adapter.save_checkpoint
        monkeypatch.setattr(
            adapter, "save_checkpoint", lambda self, path, value: real_save(self, path, corrupted(value))
        )
    base = mlp(base_framework)
    checkpoint = save_base(base, tmp_path)
    (tmp_path / output).write_bytes(b"previous")
    caught = r"does not hold what was converted: (2\.weight holds other bits|its bytes differ from what was written)"
    with pytest.raises(AssignError, match=caught):
        convert_checkpoint(base, mlp(raw_framework), checkpoint, tmp_path / output, memory_budget_mib=budget)
    assert (tmp_path / output).read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([checkpoint.name, output])
