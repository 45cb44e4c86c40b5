"""The Lambda layer: the shared ``fsnode_core`` library plus its third-party packages.

It is bundled locally (no Docker): pip fetches manylinux wheels for the Lambda
runtime, and the result is cached under ``.cdk-cache/`` keyed by a hash of every
input, so a second synth (or a test run) costs a directory copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

# The Lambda runtime the layer is built for, and every function runs on (control_plane
# pins it). pip must pick wheels for it, not for the machine running synth.
LAMBDA_PYTHON = (3, 11)
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_11
_PIP_PLATFORM_ARGS = (
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    ".".join(map(str, LAMBDA_PYTHON)),
    "--only-binary=:all:",
)


class LayerBuildError(RuntimeError):
    """The layer's packages could not be installed (most often: no network for pip)."""


def _inputs_hash(library_dir: Path, requirements: Path) -> str:
    digest = hashlib.sha256()
    digest.update(" ".join(_PIP_PLATFORM_ARGS).encode())
    digest.update(requirements.read_bytes())
    for path in sorted(library_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(path.relative_to(library_dir).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _copy_tree(source: Path, target: Path) -> None:
    # Hard links make the copy into cdk.out nearly free on the same file system.
    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        return dst

    shutil.copytree(source, target, copy_function=link_or_copy, dirs_exist_ok=True)


@jsii.implements(ILocalBundling)
class _PipLocalBundling:
    """Builds ``python/`` (the layer's import root) with pip; reuses a cached build."""

    def __init__(self, *, library_dir: Path, requirements: Path, cache_dir: Path, key: str) -> None:
        self._library_dir = library_dir
        self._requirements = requirements
        self._cached = cache_dir / f"layer-{key}"

    def try_bundle(self, output_dir: str, *_options: object, **_kw: object) -> bool:
        # jsii passes the BundlingOptions along; everything we need was given to __init__.
        if not (self._cached / "python").is_dir():
            self._build()
        _copy_tree(self._cached, Path(output_dir))
        return True

    def _build(self) -> None:
        self._cached.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the cache and rename, so an interrupted build is never reused.
        staging = Path(tempfile.mkdtemp(prefix="layer-", dir=self._cached.parent))
        try:
            target = staging / "python"
            command = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-compile",
                "--disable-pip-version-check",
                *_PIP_PLATFORM_ARGS,
                "--target",
                str(target),
                "--requirement",
                str(self._requirements),
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise LayerBuildError(
                    "Could not build the fsnode Lambda layer: pip failed to install "
                    f"{self._requirements.name}. pip needs network access to PyPI (or a "
                    "configured index) the first time; later synths reuse "
                    f"{self._cached.parent}.\n{result.stderr.strip()[-2000:]}"
                )
            shutil.copytree(
                self._library_dir,
                target / self._library_dir.name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            try:
                staging.rename(self._cached)
            except OSError:
                # Another synth finished the same build first; its result is identical.
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


class CoreLayer(Construct):
    """A ``LayerVersion`` holding ``python/fsnode_core`` and the pinned requirements."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        library_dir: Path,
        requirements: Path,
        cache_dir: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        key = _inputs_hash(library_dir, requirements)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            description="fsnode_core shared library, aws-lambda-powertools, cryptography",
            compatible_runtimes=[LAMBDA_RUNTIME],
            compatible_architectures=[lambda_.Architecture.X86_64],
            code=lambda_.Code.from_asset(
                str(library_dir),
                # The key already covers every input; hashing the output again is waste.
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=key,
                bundling=BundlingOptions(
                    # Never run: local bundling always succeeds or raises.
                    image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.11"),
                    local=_PipLocalBundling(
                        library_dir=library_dir,
                        requirements=requirements,
                        cache_dir=cache_dir,
                        key=key,
                    ),
                ),
            ),
        )
