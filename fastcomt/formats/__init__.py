"""The response formats the model is trained and evaluated in (``cot`` and ``comt``).

- `text`: the formats' layout, splitting a response into plan / execution / answer, format checks;
- `token_ids`: the ids of the prompt, plan and marker (tokenised part by part, never as joined
  text) and each sampled token's place in the decoded text;
- `sampling`: the generation procedures (two-stage CoMT: M plans, then G executions per plan; CoT).
"""

from .sampling import Completion, PlanRollout, ProblemRollout, generate, generate_comt, generate_cot, sample_seed
from .text import (
    EXECUTION_MARKER,
    FORMATS,
    FormatCheck,
    ResponseParts,
    check_format,
    plan_leaks,
    render_response,
    split_response,
)
from .token_ids import (
    end_of_turn_ids,
    execution_prefix_ids,
    marker_ids,
    marker_stop_token_id,
    prompt_ids,
    stop_token_ids,
    text_ids,
    token_char_offsets,
)

__all__ = [
    "FORMATS",
    "EXECUTION_MARKER",
    "ResponseParts",
    "FormatCheck",
    "Completion",
    "PlanRollout",
    "ProblemRollout",
    "render_response",
    "split_response",
    "check_format",
    "plan_leaks",
    "prompt_ids",
    "marker_ids",
    "text_ids",
    "execution_prefix_ids",
    "end_of_turn_ids",
    "stop_token_ids",
    "marker_stop_token_id",
    "token_char_offsets",
    "sample_seed",
    "generate_comt",
    "generate_cot",
    "generate",
]
