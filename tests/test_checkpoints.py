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


def test_torch_resnet18_checkpoint_becomes_one_paddle_loads(tmp_path: Path) -> None:
    source = torch_resnet()
    randomize(source, 12)
    torch.save(source.state_dict(), tmp_path / "resnet18.pt")
    code, output = cli(
        "convert-weights", spec("raw"), spec("base"), "--checkpoint", str(tmp_path / "resnet18.pt"),
        "-o", str(tmp_path / "resnet18.pdparams"),
    )  # fmt: skip
    assert code == 0, output
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
