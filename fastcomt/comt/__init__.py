"""Chain-of-Meta-Thought data: abstract solution strategies (variable names, no computed numbers).

- `offline`: abstract annotated gold solutions (GSM8K `<<expr=value>>`, synthetic plans), no model;
- `teacher`: an OpenAI-compatible teacher writes the meta-thought, then filters check it;
- `cot`: the benchmark's worked solutions, for the CoT-SFT baseline;
- `build.build_comt_data(config)`: any of the three into a resumable JSONL data set.

See README.md in this folder for the record format and how offline and teacher meta-thoughts differ.
"""

from .build import ComtDataConfig, FilterConfig, TeacherSettings, build_comt_data
from .chat import sft_messages
from .cot import clean_worked_solution, cot_target
from .filters import DEFAULT_ALLOWED_CONSTANTS, FilterResult, FilterSettings, run_filters
from .meta_thought import MetaThought, MetaThoughtParseError, evaluate_meta_thought, parse_meta_thought
from .offline import OfflineAbstractionError, offline_meta_thought
from .records import ComtRecord, read_records
from .safe_eval import UnsafeExpressionError, safe_evaluate
from .teacher import PROMPT_VERSION, teacher_messages

__all__ = [
    "ComtDataConfig",
    "FilterConfig",
    "TeacherSettings",
    "build_comt_data",
    "sft_messages",
    "clean_worked_solution",
    "cot_target",
    "DEFAULT_ALLOWED_CONSTANTS",
    "FilterResult",
    "FilterSettings",
    "run_filters",
    "MetaThought",
    "MetaThoughtParseError",
    "evaluate_meta_thought",
    "parse_meta_thought",
    "OfflineAbstractionError",
    "offline_meta_thought",
    "ComtRecord",
    "read_records",
    "UnsafeExpressionError",
    "safe_evaluate",
    "PROMPT_VERSION",
    "teacher_messages",
]
