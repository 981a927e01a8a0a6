"""The bad-input and fault battery (see `battery.py`): every case ends in its expected outcome, never a hang,
a raw traceback or a silent wrong result."""

import importlib
import pkgutil

import pytest
from battery import TESTS, run_case

ASSET_FIXTURES = ("tiny_bert_dir", "tiny_vit_dir", "tiny_resnet_dir", "tiny_wav2vec2_dir", "tiny_whisper_dir")


def _cases():
    modules = sorted(m.name for m in pkgutil.iter_modules([TESTS]) if m.name.startswith("battery_"))
    cases = [case for name in modules for case in getattr(importlib.import_module(name), "CASES", [])]
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), f"duplicate case ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    return cases


CASES = _cases()


class _Assets(dict):
    """Fixture values by name, created on first use (a text case never builds the tiny Whisper)."""

    def __init__(self, request):
        super().__init__()
        self.request = request

    def __missing__(self, name):
        if name not in ASSET_FIXTURES:
            raise KeyError(name)
        self[name] = self.request.getfixturevalue(name)
        return self[name]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case, tmp_path, request):
    result = run_case(case, tmp_path, _Assets(request))
    case.expect.verify(result)
