"""Multi-node jobs: the command each other node runs to join a job (never imports paddle).

A job with `devices.nnodes` > 1 is node 0 of a `paddle.distributed.launch` rendezvous at
`devices.master`: the studio starts it like any job, and its launcher waits until every other node
has joined. Node K (1 .. nnodes-1) joins by running `python -m trainer run CONFIG --job-dir JOB
--node-rank K` from the studio's checkout at the same path, which starts that node's launcher with
`--rank K` and its logs in `launch_logs/node-K/` (trainer/config.py's `launch_prefix`). That node
reads the config, the model and the data at the same paths as node 0; only global rank 0 (on node
0) writes the job's status, metrics, checkpoints and output.
"""

from __future__ import annotations

import os
import shlex
from typing import NamedTuple

from plumbing.paths import REPO_ROOT
from trainer.config import run_argv


class NodeCommand(NamedTuple):
    rank: int
    argv: list[str]

    @property
    def shell(self) -> str:
        """The line to paste on that node: `python -m trainer` needs the checkout as working directory."""
        return f"cd {shlex.quote(os.fspath(REPO_ROOT))} && {shlex.join(self.argv)}"


def node_argv(config_path: str | os.PathLike, job_dir: str | os.PathLike, node_rank: int,
              resume: bool = False) -> list[str]:
    """`python -m trainer run CONFIG --job-dir JOB [--resume] --node-rank K`, with absolute paths."""
    return run_argv(os.path.abspath(config_path), os.path.abspath(job_dir), resume) + ["--node-rank", str(node_rank)]


def other_node_commands(nnodes: int, config_path: str | os.PathLike, job_dir: str | os.PathLike,
                        resume: bool = False) -> list[NodeCommand]:
    """What nodes 1 .. nnodes-1 (`devices.nnodes`) run to join the job in `job_dir`; [] for a
    single-node job. `resume` must match node 0's launch: every rank starts from the same
    checkpoint, or none does."""
    return [NodeCommand(rank, node_argv(config_path, job_dir, rank, resume)) for rank in range(1, nnodes)]


def commands_text(commands: list[NodeCommand]) -> str:
    """The commands as a shell snippet, each under a comment naming its node."""
    return "\n\n".join(f"# node {c.rank}\n{c.shell}" for c in commands)
