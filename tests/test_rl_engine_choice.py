"""`rollout.engine` choices of the CCRL config that need no backend installed to check."""

import pytest

from fastcomt.config import config_from_dict
from fastcomt.train.rl_config import RLConfig, check_rl_config


def _cfg(**rollout):
    return config_from_dict(RLConfig, {"output_dir": "x", "model": {"path": "m"}, "rollout": rollout})


def test_vllm_http_needs_server_urls_and_only_it_takes_them():
    check_rl_config(_cfg(engine="vllm_http", server_urls=["http://127.0.0.1:8000"]))
    check_rl_config(_cfg(engine="vllm", vllm_args={"dtype": "bfloat16", "block_size": 32}))
    with pytest.raises(
        ValueError, match="rollout.server_urls: expected server URLs exactly when rollout.engine is one of"
    ):
        check_rl_config(_cfg(engine="vllm_http"))
    with pytest.raises(ValueError, match="rollout.server_urls"):
        check_rl_config(_cfg(server_urls=["http://127.0.0.1:1"]))
    with pytest.raises(ValueError, match="rollout.engine: expected one of"):
        _cfg(engine="tgi")


def test_more_executions_per_problem_than_the_reward_kernel_holds_is_rejected_upfront():
    check_rl_config(_cfg(plans_per_problem=4, executions_per_plan=16))  # 64: the most one problem holds
    with pytest.raises(
        ValueError, match=r"rollout.plans_per_problem x rollout.executions_per_plan: .* got 5 x 16 = 80"
    ):
        check_rl_config(_cfg(plans_per_problem=5, executions_per_plan=16))


def test_the_config_limit_is_the_reward_kernels():
    from fastcomt.kernels.rewards import MAX_PROBLEM_SIZE
    from fastcomt.train.rl_config import MAX_EXECUTIONS_PER_PROBLEM

    assert MAX_EXECUTIONS_PER_PROBLEM == MAX_PROBLEM_SIZE
