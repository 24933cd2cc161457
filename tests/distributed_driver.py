"""One rank of a test run under torchrun: `fastcomt sft|rl --config FILE`, optionally killed mid-run.

    distributed_driver.py sft CONFIG [--kill-rank R (--kill-after-step S | --kill-in-save-step S)]

--kill-rank with --kill-after-step: rank R dies (os._exit, no clean-up, as a lost node would) right
after the checkpoint of step S is complete; with --kill-in-save-step: after writing its shards of
step S's checkpoint, before the checkpoint is complete. The other ranks block on the next collective
until torchrun tears them down. What is left on disk is what a real crash leaves.
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
    parser.add_argument("--kill-in-save-step", type=int)
    args = parser.parse_args()
    if args.command == "sft":
        import fastcomt.train.sft as recipe
    else:
        import fastcomt.train.rl as recipe
    if args.kill_rank is not None and int(os.environ["RANK"]) == args.kill_rank and args.kill_in_save_step is not None:
        import fastcomt.train.checkpoint as checkpoint

        write_shards = checkpoint.save_sharded_state

        def write_then_die(folder, **kwargs):
            write_shards(folder, **kwargs)
            if f"step_{args.kill_in_save_step:08d}" in str(folder):
                os._exit(17)

        checkpoint.save_sharded_state = write_then_die
    if args.kill_rank is not None and int(os.environ["RANK"]) == args.kill_rank and args.kill_after_step is not None:
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
