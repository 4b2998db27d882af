import os
import sys
import zlib

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # so tests can `import rule_specs`, `specs.*`

SEED = int(os.environ.get("DUALJAC_TEST_SEED", "20261122"))


@pytest.fixture
def rng(request):
    """A generator seeded from DUALJAC_TEST_SEED (in the report header) and the test's id: rerun a
    failing test with the same DUALJAC_TEST_SEED to get the same draws."""
    seed = (SEED + zlib.crc32(request.node.nodeid.encode())) % 2**32
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


def pytest_report_header(config):
    return f"dualjac test seed: DUALJAC_TEST_SEED={SEED}"
