"""A tiny Qwen2 policy saved to disk with a locally trained tokenizer, GRPO trainers (TRL's stock one
and fastcomt's) built on it, and a hand-made GRPO batch, for the TRL adapter tests. No network."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastcomt.tokenizer import train_tokenizer

PROMPTS = ["what is 1 plus 2", "compute 4 times 5", "what is 7 minus 3", "compute 9 plus 9"]


def save_tiny_policy(folder, *, seed: int = 0, **config_overrides) -> str:
    """Saves a 1-layer Qwen2 and a byte-level BPE tokenizer (~300 tokens) into ``folder``."""
    tokenizer = train_tokenizer(PROMPTS * 3 + ["the answer is 3 20 4 18"], kind="bpe", vocab_size=300)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **config_overrides,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # a larger head spreads the log-probs so that clipping happens
        model.lm_head.weight.mul_(8.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def grpo_config(output_dir, **overrides):
    from trl import GRPOConfig

    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        max_steps=2,
        bf16=False,
        seed=0,
    )
    settings.update(overrides)
    return GRPOConfig(**settings)


def length_reward(completions, **kwargs):
    return [float(len(c)) for c in completions]


def build_trainer(trainer_class, policy_dir, args):
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    dataset = Dataset.from_dict({"prompt": PROMPTS * 2})
    return trainer_class(
        model=policy_dir, args=args, reward_funcs=length_reward, train_dataset=dataset, processing_class=tokenizer
    )


def make_batch(trainer, *, seed: int = 0, prompt_len: int = 5, completion_len: int = 6) -> dict:
    """A GRPO micro-batch as ``_generate_and_score_completions`` leaves it: left-padded prompts, ragged
    completions, advantages, old/reference/sampling log-probs near the current policy (some far enough
    to clip), a token-level importance ratio, and the generation batch's token count."""
    gen = torch.Generator().manual_seed(seed)
    batch = 4
    vocab = trainer.model.config.vocab_size
    prompt_ids = torch.randint(3, vocab, (batch, prompt_len), generator=gen)
    prompt_mask = torch.ones(batch, prompt_len, dtype=torch.long)
    prompt_mask[1, :2] = 0  # left padding
    completion_ids = torch.randint(3, vocab, (batch, completion_len), generator=gen)
    lengths = torch.tensor([completion_len, 3, 1, completion_len - 1])
    completion_mask = (torch.arange(completion_len)[None] < lengths[:, None]).long()
    with torch.no_grad():
        input_ids = torch.cat([prompt_ids, completion_ids], 1)
        attention_mask = torch.cat([prompt_mask, completion_mask], 1)
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, completion_len
        )
    noise = lambda scale: scale * torch.randn(batch, completion_len, generator=gen)  # noqa: E731
    ratio = torch.exp(noise(0.4))
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.randn(batch, generator=gen),
        "old_per_token_logps": logps + noise(0.4),
        "ref_per_token_logps": logps + noise(0.3),
        "sampling_per_token_logps": logps + noise(0.5),
        "importance_sampling_ratio": ratio,
        "num_items_in_batch": completion_mask.sum().float() * 3.0,
    }


def loss_and_grads(trainer, inputs):
    model = trainer.model
    model.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(model, inputs)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads
