"""Fixtures of the ferrum Python tests: the CPU backend, an f32 context, a seeded generator, and
the CUDA backend for tests marked `gpu` (skipped, with the reason, without one)."""
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


@pytest.fixture(scope="session")
def cuda():
    try:
        backend = ferrum.Backend.load("cuda")
    except ferrum.Error as e:
        pytest.skip(f"no usable CUDA backend: {e.message.splitlines()[0][:300]}")
    if backend.device_count < 1:
        pytest.skip("the CUDA plugin reports no device")
    return backend
