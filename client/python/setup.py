"""Build hook: generates the protobuf and gRPC modules from the repository's proto/ tree.

Metadata lives in pyproject.toml. This file only (1) runs generate_stubs.sh into the
build directory, so that installed packages always match the .proto files they were
built from, and (2) pins grpcio/protobuf to what the generating grpcio-tools requires.
"""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import List

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO_DIR = Path(os.environ.get("MLA_PROTO_DIR", HERE.parent.parent / "proto"))


def runtime_requirements() -> List[str]:
    """grpcio and protobuf as required by the grpcio-tools doing the generation."""
    wanted = ("grpcio", "protobuf")
    tools_requires = importlib.metadata.requires("grpcio-tools") or []
    pinned = [r for r in tools_requires if r.split("<")[0].split(">")[0].strip() in wanted]
    names = {r.split("<")[0].split(">")[0].split("=")[0].strip() for r in pinned}
    return pinned + [name for name in wanted if name not in names]


class BuildPyWithStubs(build_py):
    """build_py that writes freshly generated *_pb2*.py modules into build_lib."""

    def run(self) -> None:
        super().run()
        out = Path(self.build_lib) / "mla_client" / "_proto"
        if (PROTO_DIR / "mla" / "v1" / "inference.proto").is_file():
            env = dict(os.environ, PYTHON=sys.executable, MLA_PROTO_DIR=str(PROTO_DIR))
            subprocess.run(["bash", str(HERE / "generate_stubs.sh"), str(out)], env=env, check=True)
        elif not (out / "inference_pb2.py").is_file():
            raise RuntimeError(
                f"{PROTO_DIR} has no mla/v1/inference.proto and no generated stubs were found; "
                "build from a repository checkout or set MLA_PROTO_DIR")


setup(install_requires=runtime_requirements(), cmdclass={"build_py": BuildPyWithStubs})
