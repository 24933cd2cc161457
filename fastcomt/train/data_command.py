"""`fastcomt data`: build the SFT data set described by a data-build config or an SFT config.

The command lives at the training layer because an SFT config is checked whole (every key, as
`fastcomt sft` checks it) before its `data.build` section is built by `fastcomt.comt.build`.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastcomt.comt.build import ComtDataConfig, build_comt_data, build_settings
from fastcomt.config import config_from_dict

__all__ = ["main"]


def main(config: str | None = None, overrides: Sequence[str] = ()) -> int:
    """`fastcomt data --config FILE [key=value ...]`: build the data set and print its report.

    FILE is a data-build config (ComtDataConfig keys at the top level) or an SFT config, whose
    `data.build` section is built into its `data.train` file (overrides then use `data.build.` keys).
    """
    import json

    import yaml

    from fastcomt.config import apply_overrides

    if config is None:
        raise ValueError("config: expected a YAML file describing the data set (see configs/sft-*.yaml)")
    with open(config, encoding="utf-8") as f:
        raw = apply_overrides(yaml.safe_load(f) or {}, list(overrides or ()))
    if isinstance(raw.get("data"), dict):
        # An SFT config: every key (not only data.build's) is checked as `fastcomt sft` would, so an
        # unknown key or a wrong type fails here too instead of being dropped.
        from .config import SFTConfig

        try:
            sft = config_from_dict(SFTConfig, raw)
        except ValueError as exc:
            raise ValueError(f"{config}: {exc}") from exc
        if sft.data.build is None:
            raise ValueError(
                f"{config}: data.build: expected a mapping of data-build keys (`fastcomt data --help`) "
                f"that builds data.train ({sft.data.train}), got none"
            )
        try:
            cfg = config_from_dict(ComtDataConfig, build_settings(sft.data), "data.build")
        except ValueError as exc:
            raise ValueError(f"{config}: {exc}") from exc
    else:
        cfg = config_from_dict(ComtDataConfig, raw)
    report = build_comt_data(cfg, progress=True)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
    return 0
