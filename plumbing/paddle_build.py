"""Which PaddlePaddle build is installed, found without importing paddle (seconds, and never in the
web UI's process): the distribution's name and version from its metadata, and whether it was
compiled with CUDA from `paddle/version/__init__.py`, the file paddle's own build writes
(`cuda_version = 'False'` on a CPU build). The README's "GPU machines" section says how to install
the GPU build."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# Paddle's distributions: the CPU wheel on PyPI and the CUDA wheels on Paddle's own package index.
DISTRIBUTIONS = ("paddlepaddle-gpu", "paddlepaddle")
GPU_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/cu126/"

_FIELD = re.compile(r"^(full_version|cuda_version)\s*=\s*'([^']*)'", re.MULTILINE)


@dataclass(frozen=True)
class PaddleBuild:
    distribution: str  # paddlepaddle, paddlepaddle-gpu, or "" when the metadata is gone
    version: str
    cuda: str  # the CUDA version it was compiled with; "" for a CPU build

    @property
    def has_cuda(self) -> bool:
        return bool(self.cuda)

    def describe(self) -> str:
        return f"{self.distribution or 'paddle'} {self.version}".strip()

    def gpu_install_command(self) -> str:
        """The commands that replace this build with the GPU one of the same version (CUDA 12.6's index)."""
        version = f"=={self.version}" if self.version else ""
        return (f"pip uninstall -y {self.distribution or 'paddlepaddle'} && "
                f"pip install paddlepaddle-gpu{version} -i {GPU_INDEX}")


def read_build(version_file: Path, distribution: str = "") -> PaddleBuild:
    """The build facts written in a `paddle/version/__init__.py`."""
    fields = dict(_FIELD.findall(version_file.read_text(encoding="utf-8")))
    cuda = fields.get("cuda_version", "False")
    return PaddleBuild(distribution=distribution, version=fields.get("full_version", ""),
                       cuda="" if cuda in ("False", "None", "") else cuda)


@cache
def installed_build() -> PaddleBuild | None:
    """The installed paddle's build, or None when paddle is not installed."""
    spec = importlib.util.find_spec("paddle")
    if spec is None or not spec.submodule_search_locations:
        return None
    distribution = ""
    for name in DISTRIBUTIONS:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        distribution = name
        break
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version" / "__init__.py"
    try:
        return read_build(version_file, distribution)
    except OSError:
        version = importlib.metadata.version(distribution) if distribution else ""
        return PaddleBuild(distribution, version, "" if distribution != "paddlepaddle-gpu" else "unknown")
