"""Configs, supernet, derive, derived network, weight transfer, fuse(), build/load, FLOPs, info."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from torch import nn

from engine.blocks import BASE_PREFERENCE, DegradationClassifier, TaskPretrainNet
from engine.build import (
    build_fused,
    build_supernet,
    derive_fused,
    load_fused,
    load_weights,
    save_fused,
    save_weights,
    transfer_weights,
)
from engine.configs import NASFEConfig, get_config, list_configs, register_config
from engine.errors import UserError
from engine.flops import count_params, network_flops, param_range, worst_case
from engine.genotype import BlockGene, Genotype, all_paths, derive_cell, edge_index, num_edges
from training.cli import main as train_main

torch.set_num_threads(1)

SMOKE = get_config("smoke")

# Two smoke genotypes covering every non-trivial operator, level changes and unused cell inputs.
GENOTYPES = [
    Genotype("smoke", (BlockGene((0, 1), ("fft_op", "self_attention")), BlockGene((1, 2), ("res2block", "deveil"))), (1, 1, 0)),
    Genotype("smoke", (BlockGene((1, 0), ("sep_conv_5x5", "res_op")), BlockGene((0, 2), ("dil_conv_5x5", "identity"))), (0, 1, 0)),
    Genotype("smoke", (BlockGene((0, 1), ("sep_conv_3x3", "dil_conv_3x3")), BlockGene((2, 1), ("identity", "fft_op"))), (1, 0, 0)),
]


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _wake_identity(net: nn.Module, seed: int = 1) -> None:
    """The identity projection starts at zero (no effect); give it weights so tests can see it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.identity_branch.proj.weight.copy_(0.1 * torch.randn(net.identity_branch.proj.weight.shape, generator=g))
        net.identity_branch.neutral.copy_(torch.randn(net.identity_branch.neutral.shape, generator=g))


def _inputs(cfg: NASFEConfig, batch: int, size: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = size or cfg.crop_size
    return torch.rand(batch, 3, s, s, generator=g), torch.randn(batch, cfg.id_channels, cfg.id_size, cfg.id_size, generator=g)


# --- configs -----------------------------------------------------------------------------------


def test_config_registry():
    assert {"smoke", "rt", "rt_wide", "paper"} <= set(list_configs())
    with pytest.raises(ValueError, match="already registered"):
        register_config(SMOKE)
    with pytest.raises(UserError, match="unknown network config 'huge'.*smoke"):
        get_config("huge")
    for name in ("smoke", "rt", "rt_wide", "paper"):
        cfg = get_config(name)
        assert cfg.id_channels == 128 and cfg.crop_size % cfg.size_multiple == 0
    assert get_config("paper").blocks == 12
    # rt_wide is rt widened: same search space and topology, so rt's genotypes fit it.
    rt, wide = get_config("rt"), get_config("rt_wide")
    assert (wide.ops, wide.layers, wide.blocks, wide.levels) == (rt.ops, rt.layers, rt.blocks, rt.levels)
    assert wide.dec_channels > rt.dec_channels and min(wide.fusion_channels) > min(rt.fusion_channels)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown operators"):
        dataclasses.replace(SMOKE, name="bad", ops=("identity", "conv_9x9"))
    with pytest.raises(ValueError, match="other than zero"):
        dataclasses.replace(SMOKE, name="bad", ops=("zero",))
    with pytest.raises(ValueError, match="divisible by 8"):
        dataclasses.replace(SMOKE, name="bad", crop_size=36)
    with pytest.raises(ValueError, match="head_smooth sizes must be >= 2"):
        dataclasses.replace(SMOKE, name="bad", head_smooth=(1, 4))
    # The head's box filters tile the input too.
    assert dataclasses.replace(SMOKE, head_smooth=(16,)).size_multiple == 16
    with pytest.raises(ValueError, match="divisible by 24"):
        dataclasses.replace(SMOKE, name="bad", head_smooth=(2, 3))


# --- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,size", [("smoke", None), ("rt", 32)])
@pytest.mark.parametrize("batch", [1, 4])
def test_supernet_shapes(name, size, batch):
    sn = build_supernet(name).eval()
    x, identity = _inputs(sn.config, batch, size)
    with torch.no_grad():
        for ident in (None, identity):
            y = sn(x, identity=ident)
            assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name,size", [("smoke", None), ("rt", None), ("paper", 16)])
@pytest.mark.parametrize("batch", [1, 4])
def test_fused_shapes(name, size, batch):
    cfg = get_config(name)
    net = build_fused(worst_case(cfg, size=16).genotype if name == "paper" else worst_case(cfg).genotype).eval()
    x, identity = _inputs(cfg, batch, size)
    prior = torch.rand(batch, 3)
    with torch.no_grad():
        y = net(x, prior, identity)
        assert y.shape == x.shape and torch.isfinite(y).all()
        p = net.classify(x)
    assert p.shape == (batch, 3) and ((p >= 0) & (p <= 1)).all()


def test_paper_supernet_builds_and_runs_on_a_tiny_input():
    sn = build_supernet("paper").eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert sn(x).shape == (1, 3, 8, 8)
    assert sn.derive().problems(sn.config) == []


def test_bad_inputs_name_expected_and_actual_shapes():
    net = build_fused(GENOTYPES[0]).eval()
    with pytest.raises(ValueError, match=r"multiples of 8, got \(1, 3, 30, 30\)"):
        net(torch.rand(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"prior: expected shape \(2, 3\), got \(2, 4\)"):
        net(torch.rand(2, 3, 32, 32), prior=torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"identity: expected shape \(2 or 1, 128, h, w\), got \(2, 64, 5, 5\)"):
        net(torch.rand(2, 3, 32, 32), identity=torch.rand(2, 64, 5, 5))


# --- prior and identity --------------------------------------------------------------------------


def test_prior_none_uses_the_classifier():
    net = build_fused(GENOTYPES[0]).eval()
    with torch.no_grad():
        for film in (*[e.film for e in net.encoders.values()], net.entry.film):
            film.proj.weight.normal_(0, 0.5)
        x, _ = _inputs(SMOKE, 2)
        auto = net(x)
        torch.testing.assert_close(auto, net(x, net.classify(x)))
        assert (auto - net(x, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))).abs().max() > 1e-4


def test_identity_prior_and_neutral_embedding():
    net = build_fused(GENOTYPES[1]).eval()
    _wake_identity(net)
    x, identity = _inputs(SMOKE, 2)
    with torch.no_grad():
        with_id = net(x, identity=identity)
        without = net(x)
        assert (with_id - without).abs().max() > 1e-4  # the prior changes the output
        other = net(x, identity=torch.roll(identity, 1, dims=0))
        assert (other - with_id).abs().max() > 1e-4  # and depends on whose prior it is
        # Any spatial size is resized; a single prior broadcasts over the batch.
        assert net(x, identity=identity[:1, :, :3, :4]).shape == x.shape
        # Per-sample flags select identity or neutral, matching the two plain calls.
        mixed = net(x, identity=identity, has_identity=torch.tensor([1.0, 0.0]))
        torch.testing.assert_close(mixed[0], with_id[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mixed[1], without[1], atol=1e-5, rtol=1e-5)


def test_untrained_network_is_close_to_identity_map_in_gain():
    """Gain starts at 1 and the base blend at ~99 % ``x``: without residual the output is ~ the input."""
    net = build_fused(GENOTYPES[0]).eval()
    with torch.no_grad():
        net.decoder.head.residual.weight.zero_()
        net.decoder.head.residual.bias.zero_()
        x, _ = _inputs(SMOKE, 2)
        assert (net(x) - x).abs().max() < 0.01
        plain = build_fused(GENOTYPES[0], dataclasses.replace(SMOKE, head_smooth=())).eval()
        plain.load_state_dict(net.state_dict(), strict=False)
        torch.testing.assert_close(plain(x), x)


@pytest.mark.parametrize("k", SMOKE.head_smooth)
def test_image_head_base_selects_a_box_filtered_copy(k):
    """A base logit that dominates picks that copy: ``avg_pool(x, k)`` bilinearly upsampled, times the gain."""
    net = build_fused(GENOTYPES[0]).eval()
    head = net.decoder.head
    with torch.no_grad():
        head.residual.weight.zero_()
        head.residual.bias.zero_()
        head.log_gain.bias.fill_(0.5)
        head.base_logits.bias.zero_()[1 + SMOKE.head_smooth.index(k)] = 50.0
        x, _ = _inputs(SMOKE, 2)
        box = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, k), size=x.shape[-2:], mode="bilinear")
        # Gain e^(4 tanh(0.5 / 4)) ~ 1.64 on the smoothed copy; a box-filtered noisy image is smoother.
        torch.testing.assert_close(net(x), box * torch.exp(4 * torch.tanh(torch.tensor(0.5 / 4))))
        assert net(x).diff(dim=-1).abs().mean() < 0.5 * x.diff(dim=-1).abs().mean()


# --- search: gradients, derive, equivalence ------------------------------------------------------


def test_gradients_reach_alpha_beta_and_weights():
    sn = build_supernet("smoke").train()
    x, identity = _inputs(SMOKE, 4)
    sn(x, identity=identity).square().mean().backward()
    alpha, beta = sn.arch_parameters()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    assert beta.grad is not None and beta.grad.abs().sum() > 0
    weights = list(sn.weight_parameters())
    assert len(weights) + 2 == len(list(sn.parameters()))
    with_grad = [p for p in weights if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(with_grad) > 0.8 * len(weights)
    assert all(torch.isfinite(p.grad).all() for p in weights if p.grad is not None)


def test_derive_is_deterministic_and_never_picks_zero():
    sn = build_supernet("smoke", seed=3)
    with torch.no_grad():
        sn.fusion.alpha[:, list(SMOKE.ops).index("zero")] = 10.0  # zero dominates every edge
    first = sn.derive()
    assert first == copy.deepcopy(sn).derive() == sn.derive()
    assert first.to_json() == sn.derive().to_json()
    assert all(op != "zero" for b in first.blocks for op in b.ops)


def test_derive_picks_strongest_inputs_and_ops():
    ops = SMOKE.ops
    alpha = torch.zeros(num_edges(2), len(ops))
    alpha[edge_index(0, 1), ops.index("fft_op")] = 5.0
    alpha[edge_index(0, 0), ops.index("deveil")] = 3.0
    alpha[edge_index(1, 2), ops.index("res_op")] = 4.0
    alpha[edge_index(1, 0), ops.index("identity")] = 2.0
    alpha[edge_index(1, 1), ops.index("sep_conv_3x3")] = 1.0  # weaker third input: dropped
    genes = derive_cell(alpha, ops, 2)
    assert genes == (BlockGene((0, 1), ("deveil", "fft_op")), BlockGene((0, 2), ("identity", "res_op")))


def test_viterbi_follows_beta():
    sn = build_supernet("rt")
    with torch.no_grad():
        sn.fusion.beta.zero_()
        # Prefer staying low-resolution: node (l, 1) from level 1, node (l, 0) from level 1.
        sn.fusion.beta[:, :, 2] = 3.0  # from level s + 1
        sn.fusion.beta[:, 1, 1] = 4.0  # level 1 from level 1
    assert sn.derive().path == (1,) * (sn.config.layers - 1) + (0,)
    with torch.no_grad():
        sn.fusion.beta.zero_()
        sn.fusion.beta[:, 0, 1] = 3.0  # level 0 from level 0
    assert sn.derive().path == (0,) * sn.config.layers


@pytest.mark.parametrize("genotype", GENOTYPES, ids=lambda g: "-".join(b.ops[0] for b in g.blocks))
def test_one_hot_supernet_equals_derived_network(genotype):
    sn = build_supernet("smoke", seed=1).eval()
    _randomise_bn(sn)
    _wake_identity(sn)
    sn.set_architecture_(genotype)
    assert sn.derive() == genotype
    net = derive_fused(sn, genotype).eval()
    x, identity = _inputs(SMOKE, 3)
    with torch.no_grad():
        torch.testing.assert_close(net(x, identity=identity), sn(x, identity=identity), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net(x), sn(x), atol=1e-5, rtol=1e-5)


def test_transfer_refuses_another_config():
    sn = build_supernet("smoke")
    other = build_fused(worst_case("rt").genotype)
    with pytest.raises(ValueError, match="config mismatch"):
        transfer_weights(sn, other)


def test_derived_network_has_only_chosen_ops():
    net = build_fused(GENOTYPES[1])
    names = {type(m).__name__ for m in net.fusion.modules()}
    assert {"SepConv", "ResidualOp", "DilConv"} <= names
    assert not names & {"MixedOp", "FFTOp", "PooledSelfAttention", "Res2Block", "DeveilOp", "Zero"}


def test_block_genes_are_canonical():
    assert BlockGene((2, 0), ("res_op", "identity")) == BlockGene((0, 2), ("identity", "res_op"))
    assert BlockGene((2, 0), ("res_op", "identity")).inputs == (0, 2)


def test_fuse_equals_unfused():
    net = build_fused(GENOTYPES[0]).eval()
    _randomise_bn(net)
    _wake_identity(net)
    x, identity = _inputs(SMOKE, 2)
    with torch.no_grad():
        ref = net(x, identity=identity)
        fused = copy.deepcopy(net).fuse()
        got = fused(x, identity=identity)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


# --- genotype files and weights -------------------------------------------------------------------


def test_genotype_json_round_trip(tmp_path):
    g = GENOTYPES[0]
    assert Genotype.from_json(g.to_json()) == g
    g.save(tmp_path / "g.json")
    assert Genotype.load(tmp_path / "g.json", SMOKE) == g


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.pop("path"), "missing keys"),
        (lambda d: d.update(version=9), "version 9"),
        (lambda d: d["blocks"][0].update(ops=["zero", "identity"]), "zero operator"),
        (lambda d: d["blocks"][0].update(ops=["conv_9x9", "identity"]), "unknown operator 'conv_9x9'"),
        (lambda d: d["blocks"][0].update(inputs=[0, 2]), "input 2 is not one of 0..1"),
        (lambda d: d.update(path=[1, 1, 1]), "must end at level 0"),
        (lambda d: d.update(path=[0, 2, 0]), "not a step of at most one"),
    ],
)
def test_genotype_validation_errors(tmp_path, edit, message):
    data = GENOTYPES[0].to_dict()
    edit(data)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=f"bad genotype file {path}.*{message}"):
        Genotype.load(path)


def test_genotype_must_fit_config(tmp_path):
    GENOTYPES[0].save(tmp_path / "g.json")
    with pytest.raises(UserError, match="2 blocks, config 'rt' has 3"):
        Genotype.load(tmp_path / "g.json", get_config("rt"))
    rt = get_config("rt")
    rt_only = Genotype("rt", tuple(BlockGene((0, 1), ("self_attention", "identity")) for _ in range(rt.blocks)), (0,) * rt.layers)
    assert "not in config 'rt'" in " ".join(rt_only.problems(rt))


def test_save_and_load_fused_round_trip(tmp_path):
    sn = build_supernet("smoke", seed=2)
    net = derive_fused(sn, GENOTYPES[0]).eval()
    _randomise_bn(net)
    GENOTYPES[0].save(tmp_path / "genotype.json")
    save_fused(net, tmp_path / "weights.safetensors")
    loaded = load_fused(tmp_path / "genotype.json", tmp_path / "weights.safetensors")
    assert not loaded.training
    x, identity = _inputs(SMOKE, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, identity=identity), net(x, identity=identity))
        folded = load_fused(tmp_path / "genotype.json", tmp_path / "weights.safetensors", fuse=True)
        torch.testing.assert_close(folded(x, identity=identity), net(x, identity=identity), atol=1e-5, rtol=1e-4)


def test_load_fused_errors_name_the_file(tmp_path):
    gpath, wpath = tmp_path / "genotype.json", tmp_path / "weights.safetensors"
    GENOTYPES[0].save(gpath)
    save_fused(build_fused(GENOTYPES[0]), wpath)
    with pytest.raises(UserError, match=f"genotype file not found: {tmp_path / 'nope.json'}"):
        load_fused(tmp_path / "nope.json", wpath)
    with pytest.raises(UserError, match=f"weights file not found: {tmp_path / 'nope.safetensors'}"):
        load_fused(gpath, tmp_path / "nope.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(wpath.read_bytes()[:200])
    with pytest.raises(UserError, match=f"corrupt or unreadable weights file {corrupt}"):
        load_fused(gpath, corrupt)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(UserError, match=f"bad genotype file {bad_json}: not JSON"):
        load_fused(bad_json, wpath)
    # Weights of another genotype: refused from the metadata, and without it from the keys/shapes.
    other_w = tmp_path / "other.safetensors"
    save_fused(build_fused(GENOTYPES[1]), other_w)
    with pytest.raises(UserError, match=f"weights file {other_w} was saved for another genotype"):
        load_fused(gpath, other_w)
    bare = tmp_path / "bare.safetensors"
    save_weights(build_fused(GENOTYPES[1]), bare)
    with pytest.raises(UserError, match=f"weights file {bare} does not match the network: .*missing"):
        load_fused(gpath, bare)
    # A genotype that does not fit the requested config.
    with pytest.raises(UserError, match=f"genotype file {gpath} does not fit config 'rt'"):
        load_fused(gpath, wpath, config="rt")


def test_weights_without_a_new_part_load_with_allow_missing(tmp_path):
    """Fine-tuning weights trained before the base blend existed: only the blend keeps its init."""
    plain = build_fused(GENOTYPES[0], dataclasses.replace(SMOKE, head_smooth=()), seed=3)
    path = tmp_path / "plain.safetensors"
    save_weights(plain, path)
    net = build_fused(GENOTYPES[0], seed=4)
    with pytest.raises(UserError, match="2 missing .*base_logits"):
        load_weights(net, path)
    assert load_weights(net, path, allow_missing=True) == ["decoder.head.base_logits.bias", "decoder.head.base_logits.weight"]
    own = net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in plain.state_dict().items())
    assert own["decoder.head.base_logits.bias"][0] == BASE_PREFERENCE
    # Keys the network lacks are still refused.
    save_weights(net, tmp_path / "full.safetensors")
    with pytest.raises(UserError, match="unexpected .*base_logits"):
        load_weights(plain, tmp_path / "full.safetensors", allow_missing=True)


def test_pretrained_encoder_and_classifier_load_into_the_supernet(tmp_path):
    pre = TaskPretrainNet(SMOKE, "noise")
    x, _ = _inputs(SMOKE, 2)
    assert pre(x).shape == x.shape
    with torch.no_grad():
        pre.encoder.stem.conv.weight.normal_()
    save_weights(pre, tmp_path / "noise.safetensors")
    sn = build_supernet("smoke")
    load_weights(sn.encoders["noise"], tmp_path / "noise.safetensors", prefix="encoder.")
    torch.testing.assert_close(sn.encoders["noise"].stem.conv.weight, pre.encoder.stem.conv.weight)
    with pytest.raises(UserError, match="does not match the network"):
        load_weights(sn.encoders["blur"], tmp_path / "noise.safetensors")
    # The classifier works alone and moves between a full network and a standalone one.
    save_weights(sn, tmp_path / "sn.safetensors")
    cls = DegradationClassifier(SMOKE).eval()
    load_weights(cls, tmp_path / "sn.safetensors", prefix="classifier.")
    sn.eval()
    with torch.no_grad():
        torch.testing.assert_close(cls.probabilities(x), sn.classify(x))


# --- budgets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "budget"), [("rt", 1.5e9), ("rt_wide", 3.1e9)])
def test_rt_flops_budget_for_any_derivable_network(name: str, budget: float):
    cfg = get_config(name)
    worst = worst_case(cfg)
    assert worst.flops <= budget
    # The bound really is the maximum: derived networks of random architectures stay below it.
    for seed in range(3):
        sn = build_supernet(cfg, seed=seed)
        with torch.no_grad():
            sn.fusion.alpha.normal_(generator=torch.Generator().manual_seed(seed))
            sn.fusion.beta.normal_(generator=torch.Generator().manual_seed(seed + 10))
        assert network_flops(build_fused(sn.derive()), cfg) <= worst.flops
    assert len(all_paths(cfg.layers, cfg.levels)) == 2 ** (cfg.layers - 1)  # two levels: free inner layers


def test_paper_params_near_the_papers_6_4_million():
    low, high = param_range("paper")
    assert 0.9 * 6.4e6 <= low <= high <= 1.1 * 6.4e6


def test_info_command_json(capsys, tmp_path):
    GENOTYPES[0].save(tmp_path / "g.json")
    assert train_main(["info", "--config", "smoke", "--genotype", str(tmp_path / "g.json"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    net = build_fused(GENOTYPES[0])
    assert info["network"]["params"] == count_params(net)
    assert info["network"]["flops"] == network_flops(net, SMOKE) > 0
    assert info["network"]["flops"] <= info["derivable"]["flops_max"]
    assert sum(info["network"]["params_by_part"].values()) == info["network"]["params"]
    assert info["supernet"]["arch_params"] == num_edges(2) * len(SMOKE.ops) + 3 * 2 * 3


def test_info_command_errors(capsys, tmp_path):
    assert train_main(["info", "--config", "huge"]) == 2
    assert "unknown network config 'huge'" in capsys.readouterr().err
    GENOTYPES[0].save(tmp_path / "g.json")
    assert train_main(["info", "--config", "rt", "--genotype", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "g.json" in err
