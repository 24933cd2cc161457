"""One rank of a test run under torchrun: `fastcomt sft|rl --config FILE`, optionally killed mid-run.

    distributed_driver.py sft CONFIG [--kill-rank R --kill-after-step S]

--kill-rank/--kill-after-step: rank R dies (os._exit, no clean-up, as a lost node would) right after
the checkpoint of step S is written; the other ranks block on the next collective until torchrun
tears them down. What is left on disk is what a real crash leaves.
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["sft", "rl"])
    parser.add_argument("config")
    parser.add_argument("--kill-rank", type=int)
    parser.add_argument("--kill-after-step", type=int)
    args = parser.parse_args()
    if args.command == "sft":
        import fastcomt.train.sft as recipe
    else:
        import fastcomt.train.rl as recipe
    if args.kill_rank is not None and int(os.environ["RANK"]) == args.kill_rank:
        save = recipe.save_checkpoint

        def save_then_die(root, step, **kwargs):
            path = save(root, step, **kwargs)
            if step >= args.kill_after_step:
                os._exit(17)
            return path

        recipe.save_checkpoint = save_then_die
    return recipe.main(args.config)


if __name__ == "__main__":
    sys.exit(main())
