"""The antmaze ant expert: the same as `python benchmark/train_expert.py --env-id ant-xy` (kept for the old command).

    python benchmark/train_ant_expert.py      # 400k SAC steps (about an hour on 2 cores) -> ~/.ogbench/experts/ant_xy_sac/

Every flag of benchmark/train_expert.py applies; see its docstring for the recipe and the checkpoint layout.
"""

import dataclasses
import os
import sys

import tyro

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_expert  # noqa: E402

if __name__ == "__main__":
    train_expert.main(tyro.cli(train_expert.Args, default=dataclasses.replace(train_expert.Args(), env_id="ant-xy")))
