"""The model zoo (segbench.methods.deep.zoo): smp and torchvision networks trained by the one loop, their
``weights`` option (none / imagenet / a file) with the network blocked, and the core without the extra.

Tests marked ``needs_zoo`` skip where the ``zoo`` extra does not import (the core's .venv); ``make test-zoo``
runs them in .venv-zoo. The others run everywhere.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time

import numpy as np
import pandas as pd
import pytest
import torch

from segbench.cli import default_methods, main
from segbench.methods import METHODS, SetupError, build_method, core_methods
from segbench.methods.deep import zoo
from segbench.run.runner import RunConfig, run

ZOO = [name for name in METHODS.names() if METHODS.get(name).extra == "zoo"]
MISSING = METHODS.get("smp-unet").unavailable() or METHODS.get("tv-lraspp-mobilenet").unavailable()
needs_zoo = pytest.mark.skipif(MISSING is not None, reason=f"needs the zoo extra (make test-zoo): {MISSING}")
TINY = {"synthetic": {"num_images": 10, "size": (64, 48)}}


def _method(name, num_classes=2, **options):
    return build_method(name, num_classes, quick=True, options={name: {"progress": False, "device": "cpu", **options}})


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _randomised(state: dict, seed: int = 0) -> dict:
    """The same keys and shapes with new random values (integer buffers kept)."""
    gen = torch.Generator().manual_seed(seed)

    def new(key, value):
        if not value.is_floating_point():
            return value.clone()
        if key.endswith("running_var"):  # positive, or BatchNorm gives NaN
            return torch.rand(value.shape, generator=gen) + 0.5
        return 0.05 * torch.randn(value.shape, generator=gen)  # small: activations stay finite through the layers

    return {k: new(k, v) for k, v in state.items()}


@pytest.fixture
def blocked_network(monkeypatch):
    """Every way out refused, each attempt recorded (an empty list: nothing tried to reach the network)."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Fresh torchvision and Hugging Face caches, and imagenet allowed to try the network (as without HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(zoo, "_USER_HF_OFFLINE", None)
    return tmp_path


# -- without the extra (runs everywhere) ---------------------------------------------------------------------


def test_zoo_is_listed_with_what_it_needs_and_left_out_of_the_default_suite(capsys):
    assert {"smp-unet", "smp-unetplusplus", "smp-fpn", "smp-deeplabv3plus", "tv-fcn-resnet50",
            "tv-deeplabv3-resnet50", "tv-deeplabv3-mobilenet", "tv-lraspp-mobilenet"} <= set(ZOO)
    assert not set(ZOO) & set(default_methods()) and not set(ZOO) & set(core_methods())
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    for name in ZOO:
        assert "needs segbench[zoo]" in lines[name], lines[name]


def test_a_zoo_method_without_the_extra_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    # Simulate the core's venv whichever venv runs this: the extra's module cannot be imported.
    monkeypatch.setattr(METHODS.get("smp-unet"), "extra_modules", ("segbench_no_such_module",))
    out = tmp_path / "run"
    code = main(["run", "--datasets", "synthetic", "--methods", "smp-unet", "--quick", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "smp-unet needs the optional extra 'zoo'" in err and "pip install 'segbench[zoo]'" in err
    assert not out.exists()
    assert main(["latency", "--methods", "smp-unet", "--sizes", "64x48", "--out", str(tmp_path / "lat")]) == 2
    with pytest.raises(SetupError, match=r"segbench\[zoo\]"):
        build_method("smp-unet", 2)


@pytest.mark.skipif(MISSING is None, reason="the zoo extra is installed here; the test above simulates its absence")
def test_the_core_venv_names_the_extra(tmp_path, capsys):
    assert main(["run", "--datasets", "synthetic", "--methods", "tv-lraspp-mobilenet", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "segbench[zoo]" in err


# -- training and scoring ------------------------------------------------------------------------------------


@needs_zoo
def test_zoo_networks_train_a_few_steps_and_are_scored(tmp_path):
    config = RunConfig(out=tmp_path / "run", datasets=["synthetic"], methods=["smp-unet", "tv-lraspp-mobilenet", "smp-unet+crf"],
                       quick=True, dataset_options=TINY, retries=0,
                       method_options={m: {"progress": False, "epochs": 2} for m in ("smp-unet", "tv-lraspp-mobilenet")})
    result = run(config, progress=False, log=lambda _: None)
    summary = result.summary.set_index("method")
    assert not result.failures and (summary["status"] == "ok").all()
    for name, params in (("smp-unet", 14.3e6), ("tv-lraspp-mobilenet", 3.2e6)):
        row = summary.loc[name]
        assert row["family"] == "deep" and row["epochs_run"] == 2
        assert 0 <= row["dataset_dice_lesion"] <= 1 and row["n_test"] == 2
        assert row["params"] == pytest.approx(params, rel=0.01) and row["flops"] > 0
        assert row["weights"] == "none" and (row["weights_sha256"] == "" or pd.isna(row["weights_sha256"]))
        history = (tmp_path / "run" / "artifacts").glob(f"synthetic__{name}__*/history.csv")
        assert len(next(history).read_text().splitlines()) == 3  # two epochs trained
    # the pipeline reused smp-unet's fitted network (shared base): the CRF followed the same network
    assert summary.loc["smp-unet+crf", "base_cell"].startswith("synthetic__smp-unet__")
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["packages"]["torchvision"] and env["packages"]["segmentation-models-pytorch"] and env["packages"]["timm"]


@needs_zoo
@pytest.mark.parametrize("name", ["smp-unet", "tv-lraspp-mobilenet"])
def test_contract_at_odd_sizes_and_same_seed_same_output(name, tiny_binary, tiny_multiclass):
    ids = tiny_binary.ids()
    image = np.ascontiguousarray(np.resize(tiny_binary[ids[8]].image, (33, 51, 3)))  # 33x51: not a multiple of 32
    outputs = []
    for _ in range(2):
        method = _method(name, epochs=1).fit(tiny_binary.subset(ids[:6]), tiny_binary.subset(ids[6:8]))
        proba = method.predict_proba(image)
        assert proba.shape == (2, 33, 51) and np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(0), 1.0, atol=1e-4)
        np.testing.assert_array_equal(method.predict(image), proba.argmax(0))
        outputs.append(proba)
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)
    ids = tiny_multiclass.ids()
    method = _method(name, 3, epochs=1).fit(tiny_multiclass.subset(ids[:6]), tiny_multiclass.subset(ids[6:8]))
    assert method.predict_proba(tiny_multiclass[ids[9]].image).shape[0] == 3


@needs_zoo
@pytest.mark.parametrize("name", ZOO)
def test_every_adapter_builds_and_maps_images_to_logits(name):
    method = _method(name)
    model = method.build_model().eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 40, 52)).shape == (2, 2, 40, 52)
    assert method.prepare_untrained() and method.cost((40, 52))["params"] > 1e6


@needs_zoo
def test_a_tu_timm_encoder_trains(tiny_binary):
    ids = tiny_binary.ids()
    method = _method("smp-fpn", encoder="tu-resnet10t", epochs=1).fit(tiny_binary.subset(ids[:6]), tiny_binary.subset(ids[6:8]))
    assert method.predict(tiny_binary[ids[9]].image).shape == tiny_binary[ids[9]].mask.shape
    with pytest.raises(SetupError, match="encoder='not-an-encoder'"):
        _method("smp-unet", encoder="not-an-encoder")


# -- weights ---------------------------------------------------------------------------------------------------


@needs_zoo
def test_weights_file_loads_the_encoder_exactly_and_decides_the_predictions(tmp_path, tiny_binary):
    encoder = _method("smp-unet").network().encoder.state_dict()
    files = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for seed, path in enumerate(files):
        torch.save(_randomised(encoder, seed), path)  # same keys and shapes, other values
    probas = []
    for path in files:
        method = _method("smp-unet", weights=str(path))
        assert method.prepare_untrained()
        saved = torch.load(path, weights_only=True)
        loaded = method.model.net.encoder.state_dict()
        assert set(saved) == set(loaded)
        for key, tensor in saved.items():
            assert torch.equal(loaded[key], tensor), key
        assert method.train_info["weights_sha256"] == _sha256(path) and method.train_info["weights"] == str(path)
        probas.append(method.predict_proba(tiny_binary[tiny_binary.ids()[0]].image))
    assert np.abs(probas[0] - probas[1]).max() > 1e-3


@needs_zoo
def test_whole_network_and_backbone_files_load_into_torchvision(tmp_path):
    net = _method("tv-lraspp-mobilenet").network()
    for name, state in (("whole.pt", _randomised(net.state_dict())), ("backbone.pt", _randomised(net.backbone.state_dict()))):
        torch.save({"state_dict": state}, tmp_path / name)  # a wrapped state dict is unwrapped
        method = _method("tv-lraspp-mobilenet", weights=str(tmp_path / name))
        method.prepare_untrained()
        target = method.model.net if name == "whole.pt" else method.model.net.backbone
        loaded = target.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())


@needs_zoo
def test_a_tu_encoder_takes_timms_own_checkpoint(tmp_path):
    import timm

    state = _randomised(timm.create_model("resnet10t", pretrained=False).state_dict())
    torch.save(state, tmp_path / "timm.pth")
    method = _method("smp-unet", encoder="tu-resnet10t", weights=str(tmp_path / "timm.pth"))
    method.prepare_untrained()
    loaded = method.model.net.encoder.model.state_dict()
    assert loaded and all(torch.equal(v, state[k]) for k, v in loaded.items())  # everything but timm's classifier


@needs_zoo
def test_a_file_that_does_not_fit_exits_2_naming_it_and_the_first_keys(tmp_path, capsys):
    torch.save(_method("smp-unet", encoder="resnet34").network().encoder.state_dict(), tmp_path / "r34.pt")
    (tmp_path / "junk.pt").write_text("not a state dict")
    cases = [(tmp_path / "r34.pt", "unexpected keys: layer1.2."), (tmp_path / "junk.pt", "cannot read a state dict"),
             (tmp_path / "absent.pt", "no such file")]
    for path, expected in cases:
        code = main(["run", "--datasets", "synthetic", "--methods", "smp-unet", "--quick", "--out", str(tmp_path / "run"),
                     "--opt", f"smp-unet.weights={path}", "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert str(path) in err and expected in err, err
    assert not list((tmp_path / "run").glob("cells/*"))


@needs_zoo
def test_network_blocked_none_and_file_never_touch_it_imagenet_fails_fast(tmp_path, empty_caches, blocked_network,
                                                                        tiny_binary, capsys):
    torch.save(_randomised(_method("smp-unet").network().encoder.state_dict()), tmp_path / "enc.pt")
    ids = tiny_binary.ids()
    for weights in ("none", str(tmp_path / "enc.pt")):
        for name in ("smp-unet", "tv-lraspp-mobilenet"):
            if name.startswith("tv") and weights != "none":
                continue
            method = _method(name, weights=weights, epochs=1)
            method.setup()
            method.fit(tiny_binary.subset(ids[:6]), tiny_binary.subset(ids[6:8]))
            method.predict(tiny_binary[ids[9]].image)
    assert blocked_network == []

    hints = {"tv-lraspp-mobilenet": [str(empty_caches / "torch" / "hub" / "checkpoints" / "mobilenet_v3_large-"), "download.pytorch.org"],
             "smp-unet": ["huggingface.co/smp-hub/resnet18.imagenet/resolve/", "smp-unet.weights=PATH", str(empty_caches / "hf")]}
    for name, expected in hints.items():
        start = time.perf_counter()
        code = main(["run", "--datasets", "synthetic", "--methods", name, "--quick", "--out", str(tmp_path / name),
                     "--opt", f"{name}.weights=imagenet", "--no-progress"])
        seconds = time.perf_counter() - start
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and seconds < 5, (seconds, err)
        assert "cannot be reached" in err and all(e in err for e in expected), err
    assert blocked_network, "imagenet should have tried the download host (and been refused)"


@needs_zoo
def test_imagenet_from_files_placed_in_the_caches_needs_no_network(empty_caches, blocked_network, monkeypatch):
    from torchvision.models import mobilenet_v3_large

    # torchvision: the classification network's file, placed as the README says
    tv = _method("tv-lraspp-mobilenet", weights="imagenet")
    cached, url, _ = tv.imagenet_file()
    cached.parent.mkdir(parents=True)
    state = _randomised(mobilenet_v3_large().state_dict())
    torch.save(state, cached)
    tv.prepare_untrained()
    loaded = tv.model.net.backbone.state_dict()
    assert loaded and all(torch.equal(v, state[f"features.{k}"]) for k, v in loaded.items())
    assert tv.train_info["weights_sha256"] == _sha256(cached) and tv.train_info["weights_source"] == url

    # smp: the encoder's file in the Hugging Face cache's layout
    from safetensors.torch import save_file

    unet = _method("smp-unet", weights="imagenet")
    cached = unet.imagenet_file()[0]
    cached.parent.mkdir(parents=True)
    state = _randomised(unet.network().encoder.state_dict())
    save_file(state, str(cached))
    unet.prepare_untrained()
    assert all(torch.equal(unet.model.net.encoder.state_dict()[k], v) for k, v in state.items())
    assert blocked_network == []


@needs_zoo
def test_provenance_in_summary_environment_and_checkpoint(tmp_path):
    state = _randomised(_method("tv-lraspp-mobilenet").network().backbone.state_dict())
    torch.save(state, tmp_path / "bb.pt")
    config = RunConfig(out=tmp_path / "run", datasets=["synthetic"], methods=["tv-lraspp-mobilenet"], quick=True,
                       dataset_options=TINY, retries=0,
                       method_options={"tv-lraspp-mobilenet": {"progress": False, "epochs": 1, "weights": str(tmp_path / "bb.pt")}})
    row = run(config, progress=False, log=lambda _: None).summary.iloc[0]
    digest = _sha256(tmp_path / "bb.pt")
    assert row["status"] == "ok" and row["weights_sha256"] == digest and row["weights"] == str(tmp_path / "bb.pt")
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["weights"]["tv-lraspp-mobilenet"]["weights_sha256"] == digest
    best = next((tmp_path / "run" / "artifacts").glob("*/best.pt"))
    # the checkpoint loads into a method asked for other initial weights: weights are not architecture
    method = _method("tv-lraspp-mobilenet", checkpoint=str(best)).fit([], None)
    assert method.train_info["weights_sha256"] == digest


@needs_zoo
def test_batchnorm_momentum_is_pytorchs_default_unless_asked():
    # torchvision's MobileNetV3 uses 0.01: after a CPU budget's few epochs its running statistics still sit near
    # their initial values and eval-mode predictions collapsed to background on PH2 (docs/zoo.md)
    def momenta(**options):
        return {m.momentum for m in _method("tv-lraspp-mobilenet", **options).build_model().modules()
                if isinstance(m, torch.nn.BatchNorm2d)}

    assert momenta() == {0.1}
    assert 0.01 in momenta(bn_momentum=None)  # the backbone's, as torchvision builds it
    assert momenta(bn_momentum=0.05) == {0.05}
    with pytest.raises(SetupError, match="bn_momentum=0"):
        _method("smp-unet", bn_momentum=0.0)
