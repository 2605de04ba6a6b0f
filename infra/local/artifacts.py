"""Build artifacts (ABI and creation bytecode) of the contracts the local stack deploys.

They come from the npm packages that `make install` puts under ``settings.local.node_modules``
and are read in place, never copied into the repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dexwatch.core.errors import DexwatchError

# Contract name -> (npm package, artifact path inside it), versions pinned by package.json.
_ARTIFACTS = {
    "ERC20PresetMinterPauser": (
        "@openzeppelin/contracts",
        "build/contracts/ERC20PresetMinterPauser.json",
    ),
    "UniswapV3Factory": (
        "@uniswap/v3-core",
        "artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json",
    ),
    "UniswapV3Pool": (
        "@uniswap/v3-core",
        "artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
    ),
    "NonfungiblePositionManager": (
        "@uniswap/v3-periphery",
        "artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json",
    ),
    "SwapRouter": ("@uniswap/v3-periphery", "artifacts/contracts/SwapRouter.sol/SwapRouter.json"),
    "UniswapV2Factory": ("@uniswap/v2-core", "build/UniswapV2Factory.json"),
    "UniswapV2Pair": ("@uniswap/v2-core", "build/UniswapV2Pair.json"),
    "SushiSwapFactory": (
        "@sushiswap/core",
        "artifacts/contracts/uniswapv2/UniswapV2Factory.sol/UniswapV2Factory.json",
    ),
    "SushiSwapPair": (
        "@sushiswap/core",
        "artifacts/contracts/uniswapv2/UniswapV2Pair.sol/UniswapV2Pair.json",
    ),
}
CONTRACTS: tuple[str, ...] = tuple(_ARTIFACTS)


class ArtifactError(DexwatchError, FileNotFoundError):
    """A contract artifact is missing or unreadable."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # creation code, 0x-prefixed


def load_artifact(node_modules: Path, name: str) -> Artifact:
    """ABI and creation bytecode of contract ``name`` (one of CONTRACTS)."""
    if name not in _ARTIFACTS:
        raise ValueError(f"unknown contract {name!r}; known: {', '.join(CONTRACTS)}")
    package, inner = _ARTIFACTS[name]
    path = Path(node_modules) / package / inner
    if not path.is_file():
        raise ArtifactError(
            f"contract artifact {path} is missing: run `make install` to install the npm packages"
        )
    try:
        data = json.loads(path.read_text())
        abi, bytecode = data["abi"], data["bytecode"]
    except (ValueError, KeyError) as err:
        raise ArtifactError(
            f"contract artifact {path} is unreadable ({err}): run `make install`"
        ) from err
    if not bytecode.removeprefix("0x"):
        raise ArtifactError(f"contract artifact {path} has no bytecode: run `make install`")
    return Artifact(name, abi, "0x" + bytecode.removeprefix("0x"))
