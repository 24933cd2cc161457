"""The SFT conversation shape, shared by CoMT and CoT data and by whoever samples from the model.

A record becomes [system (optional), user: question, assistant: target]; at inference the same
messages without the assistant turn, rendered with `add_generation_prompt=True`, prompt the model
for its plan (CoMT) or its worked solution (CoT).
"""

from __future__ import annotations

__all__ = ["sft_messages"]


def sft_messages(question: str, target: str | None = None, *, system: str | None = None) -> list[dict[str, str]]:
    """Chat messages for one example; without `target` they are the generation prompt."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question: expected a non-empty str")
    if target is not None and not isinstance(target, str):
        raise TypeError(f"target: expected str or None, got {type(target).__name__}")
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": question.strip()})
    if target is not None:
        messages.append({"role": "assistant", "content": target})
    return messages
