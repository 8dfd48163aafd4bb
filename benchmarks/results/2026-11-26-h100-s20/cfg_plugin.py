"""pytest plugin for GPU test runs under a kernel setting not yet the default: LONGMIX_DELTA_CONFIG and
LONGMIX_CHUNK_CONFIG (JSON) update _delta.CONFIG and chunk.CONFIG before the tests run (-p cfg_plugin)."""
import json
import os


def pytest_configure(config):
    from longmix.kernels.triton import _delta, chunk
    _delta.CONFIG.update(json.loads(os.environ.get("LONGMIX_DELTA_CONFIG", "{}")))
    chunk.CONFIG.update(json.loads(os.environ.get("LONGMIX_CHUNK_CONFIG", "{}")))
    print("kernel settings:", _delta.CONFIG, chunk.CONFIG.get("khat_walk"))
