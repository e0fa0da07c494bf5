"""Fixtures of the ferrum Python tests: the CPU backend, an f32 context, a seeded generator, and
the `gpu` marker (test_gpu.py: skipped, with the reason, without a CUDA backend)."""
import numpy as np
import pytest

import ferrum


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs the CUDA plugin and a GPU (skipped otherwise)")


@pytest.fixture(scope="session")
def cpu():
    return ferrum.Backend.load("cpu")


@pytest.fixture
def ctx(cpu):
    return cpu.create_context(dtype="f32")


@pytest.fixture
def rng(request):
    # one fixed seed per test (its name), so a failure reproduces
    return np.random.default_rng(sum(map(ord, request.node.name)))
