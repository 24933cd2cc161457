"""fastcomt's GRPOTrainer against TRL 1.16's stock GRPOTrainer: the same batch and weights give the same
loss and every parameter gradient (1e-5 relative) for each GRPOConfig setting the adapter claims, on
whichever of its two paths the setting takes; two training steps end to end match; unsupported
settings and TRL versions raise naming the setting."""

import math

import pytest
import torch
from trl_helpers import build_trainer, grpo_config, loss_and_grads, make_batch, save_tiny_policy

trl = pytest.importorskip("trl", reason="the TRL adapter tests need trl==1.16.x (make install adds it)")
from fastcomt.integrations import trl as fast_trl  # noqa: E402

TEMPERATURE = 0.7  # every comparison runs at a non-unit temperature


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return save_tiny_policy(tmp_path_factory.mktemp("policy"))


@pytest.fixture(scope="module")
def trainers(policy_dir, tmp_path_factory):
    """(stock, ours), built from the same saved weights, with a reference model (beta > 0)."""
    out = tmp_path_factory.mktemp("runs")
    kwargs = dict(beta=0.04, temperature=TEMPERATURE, max_completion_length=16, steps_per_generation=2)
    stock = build_trainer(trl.GRPOTrainer, policy_dir, grpo_config(out / "stock", **kwargs))
    ours = build_trainer(fast_trl.GRPOTrainer, policy_dir, grpo_config(out / "ours", **kwargs))
    for trainer in (stock, ours):
        trainer.model.train()
    return stock, ours


# name -> (trainer attributes, args fields, the path fastcomt must take)
FUSED, LOGPROBS = fast_trl.PATH_POLICY_LOSS, fast_trl.PATH_LOGPROBS
SETTINGS = {
    "grpo": ({"loss_type": "grpo", "beta": 0.0}, {}, FUSED),
    "bnpo": ({"loss_type": "bnpo", "beta": 0.0}, {}, FUSED),
    "dr_grpo_constant": ({"loss_type": "dr_grpo", "beta": 0.0}, {}, FUSED),
    "dapo_normaliser": ({"loss_type": "dapo", "beta": 0.0}, {}, FUSED),
    "dapo_eval_mode": ({"loss_type": "dapo", "beta": 0.0}, {"_eval": True}, FUSED),
    "dapo_two_processes": ({"loss_type": "dapo", "beta": 0.0}, {"_num_processes": 2}, FUSED),
    "k3_kl": ({"loss_type": "dapo", "beta": 0.04}, {"use_bias_correction_kl": False}, FUSED),
    "clip_higher": ({"loss_type": "grpo", "beta": 0.0, "epsilon_low": 0.1, "epsilon_high": 0.28}, {}, FUSED),
    "bias_corrected_kl": ({"loss_type": "dapo", "beta": 0.04}, {"use_bias_correction_kl": True}, FUSED),
    "delta": ({"loss_type": "grpo", "beta": 0.0}, {"delta": 1.5}, FUSED),
    "is_token_truncate": ({"loss_type": "dapo", "beta": 0.0, "use_vllm": True}, {}, FUSED),
    "is_sequence_mask": ({"loss_type": "grpo", "beta": 0.0, "use_vllm": True}, {"_sequence_is": True}, FUSED),
    "everything_fused": (
        {"loss_type": "dr_grpo", "beta": 0.04, "use_vllm": True, "epsilon_high": 0.28},
        {"delta": 1.5, "use_bias_correction_kl": True},
        FUSED,
    ),
    "bias_corrected_kl_logprobs": (
        {"loss_type": "bnpo", "beta": 0.04, "entropy_coef": 0.01, "_entropy_bonus_enabled": True},
        {"use_bias_correction_kl": True},
        LOGPROBS,
    ),
    "gspo": ({"loss_type": "grpo", "beta": 0.0, "importance_sampling_level": "sequence"}, {}, LOGPROBS),
    "luspo": ({"loss_type": "luspo", "beta": 0.0, "importance_sampling_level": "sequence"}, {}, LOGPROBS),
    "cispo": ({"loss_type": "cispo", "beta": 0.0, "epsilon_high": 5.0}, {}, LOGPROBS),
    "sapo": ({"loss_type": "sapo", "beta": 0.0}, {}, LOGPROBS),
    "vespo": ({"loss_type": "vespo", "beta": 0.0}, {}, LOGPROBS),
    "entropy_bonus": (
        {"loss_type": "bnpo", "beta": 0.0, "entropy_coef": 0.05, "_entropy_bonus_enabled": True},
        {},
        LOGPROBS,
    ),
    "entropy_mask": ({"loss_type": "dapo", "beta": 0.0, "top_entropy_quantile": 0.5}, {}, LOGPROBS),
    "off_policy_mask": ({"loss_type": "dapo", "beta": 0.0, "off_policy_mask_threshold": 0.05}, {}, LOGPROBS),
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-12))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_loss_and_every_gradient_match_stock_trl(trainers, monkeypatch, name):
    attributes, fields, path = SETTINGS[name]
    fields = dict(fields)
    eval_mode = fields.pop("_eval", False)
    sequence_is = fields.pop("_sequence_is", False)
    num_processes = fields.pop("_num_processes", None)
    stock, ours = trainers
    if num_processes is not None:
        # What a rank of a multi-process run sees: TRL's dapo divides the global count by it.
        monkeypatch.setattr(type(stock.accelerator), "num_processes", property(lambda self: num_processes))
    results = []
    for trainer in (stock, ours):
        for key, value in attributes.items():
            monkeypatch.setattr(trainer, key, value, raising=False)
        for key, value in fields.items():
            monkeypatch.setattr(trainer.args, key, value)
        monkeypatch.setattr(trainer, "vllm_importance_sampling_correction", True, raising=False)
        monkeypatch.setattr(trainer, "current_gradient_accumulation_steps", 4, raising=False)
        inputs = make_batch(stock, seed=1)
        if sequence_is:
            # sequence_mask: one ratio per sequence, 0 where it fell outside the bounds.
            inputs["importance_sampling_ratio"] = torch.tensor([[1.3], [0.0], [0.8], [2.1]])
        if eval_mode:
            trainer.model.eval()
        try:
            results.append(loss_and_grads(trainer, inputs))
        finally:
            trainer.model.train()
    assert ours.fastcomt_path == path
    (stock_loss, stock_grads), (our_loss, our_grads) = results
    assert math.isfinite(our_loss.item()) and stock_loss.abs() > 1e-6
    assert abs(our_loss.item() - stock_loss.item()) <= 1e-5 * abs(stock_loss.item()) + 1e-7
    assert set(our_grads) == set(stock_grads)
    for param_name, grad in stock_grads.items():
        assert _rel(our_grads[param_name], grad) <= 1e-5, param_name
    if path == FUSED:
        # The fused path logs TRL's metrics from its own pass.
        for key in ("entropy", "clip_ratio/low_mean", "clip_ratio/high_mean"):
            mode = "eval" if eval_mode else "train"
            assert abs(ours._metrics[mode][key][-1] - stock._metrics[mode][key][-1]) <= 1e-5, key


@pytest.mark.parametrize(
    "overrides, path",
    [
        ({"loss_type": "dapo"}, FUSED),
        ({"loss_type": "grpo", "importance_sampling_level": "sequence"}, LOGPROBS),
    ],
    ids=["dapo_fused", "gspo_logprobs"],
)
def test_two_training_steps_match_stock_trl(policy_dir, tmp_path, overrides, path):
    # Gradient accumulation over 2 micro-batches, one generation reused for 2 iterations (old log-probs
    # are computed, so the ratios move off 1), SGD so that parameter updates are the gradients.
    settings = dict(
        gradient_accumulation_steps=2,
        steps_per_generation=2,
        num_iterations=2,
        optim="sgd",
        learning_rate=0.5,
        temperature=TEMPERATURE,
        max_steps=2,
        **overrides,
    )
    updates = []
    for name, trainer_class in (("stock", trl.GRPOTrainer), ("ours", fast_trl.GRPOTrainer)):
        trainer = build_trainer(trainer_class, policy_dir, grpo_config(tmp_path / name, **settings))
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        torch.manual_seed(0)
        trainer.train()
        updates.append({n: p.detach() - before[n] for n, p in trainer.model.named_parameters()})
        if name == "ours":
            assert trainer.fastcomt_path == path
            assert len(trainer.state.log_history) >= 2 and math.isfinite(trainer.state.log_history[0]["loss"])
    stock, ours = updates
    moved = [n for n, u in stock.items() if u.norm() > 0]
    assert moved  # the run trained something
    for n in moved:
        assert _rel(ours[n], stock[n]) <= 1e-4, n


def test_use_fastcomt_switches_a_built_trainer(policy_dir, tmp_path):
    trainer = build_trainer(trl.GRPOTrainer, policy_dir, grpo_config(tmp_path))
    switched = fast_trl.use_fastcomt(trainer)
    assert switched is trainer and isinstance(trainer, fast_trl.GRPOTrainer)
    with pytest.raises(TypeError, match="trainer: expected a trl.GRPOTrainer"):
        fast_trl.use_fastcomt(trainer)


def test_unsupported_model_setting_raises_naming_it(tmp_path):
    policy = save_tiny_policy(tmp_path / "policy")
    import json

    config_path = tmp_path / "policy" / "config.json"
    config = json.loads(config_path.read_text())
    config["output_multiplier"] = 0.5  # a logit multiplier the fused kernels do not model
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="output_multiplier"):
        build_trainer(fast_trl.GRPOTrainer, policy, grpo_config(tmp_path / "run"))


def test_router_aux_loss_raises(trainers, monkeypatch):
    _, ours = trainers
    monkeypatch.setattr(ours, "aux_loss_enabled", True)
    with pytest.raises(ValueError, match="router_aux_loss_coef"):
        fast_trl._check_supported(ours)


def test_trl_version_outside_the_pinned_range_fails_clearly(monkeypatch):
    from importlib import metadata

    from fastcomt.integrations.versions import check_peer_version

    monkeypatch.setattr(metadata, "version", lambda name: "1.17.0")
    with pytest.raises(ImportError, match=r"trl: expected trl>=1.16.0,<1.17.0 .*got 1.17.0"):
        check_peer_version("trl", "1.16.0", "1.17.0")


@pytest.mark.parametrize(
    "config_overrides, trainer_overrides",
    [({"final_logit_softcapping": 3.0, "logit_scale": 0.8}, {}), ({}, {"cast_lm_head_to_fp32": True})],
    ids=["softcap_and_scale", "cast_lm_head_to_fp32"],
)
def test_head_variants_match_stock_trl(tmp_path, config_overrides, trainer_overrides):
    # TRL's fused head reads final_logit_softcapping and logit_scale from the config, as ours does.
    policy = save_tiny_policy(tmp_path / "policy", **config_overrides)
    kwargs = dict(beta=0.0, temperature=TEMPERATURE, **trainer_overrides)
    stock = build_trainer(trl.GRPOTrainer, policy, grpo_config(tmp_path / "stock", **kwargs))
    ours = build_trainer(fast_trl.GRPOTrainer, policy, grpo_config(tmp_path / "ours", **kwargs))
    for level, path in (("token", FUSED), ("sequence", LOGPROBS)):
        results = []
        for trainer in (stock, ours):
            trainer.model.train()
            trainer.importance_sampling_level = level
            trainer.current_gradient_accumulation_steps = 1
            results.append(loss_and_grads(trainer, make_batch(stock, seed=2)))
        assert ours.fastcomt_path == path
        (stock_loss, stock_grads), (our_loss, our_grads) = results
        assert abs(our_loss.item() - stock_loss.item()) <= 1e-5 * abs(stock_loss.item()) + 1e-7
        for name, grad in stock_grads.items():
            assert _rel(our_grads[name], grad) <= 1e-5, (level, name)
