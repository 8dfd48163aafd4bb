"""Every module's docstring examples run (``python -m doctest`` semantics, default flags)."""
import doctest
import importlib
import pkgutil

import pytest

import longmix

MODULES = ["longmix"] + sorted(m.name for m in pkgutil.walk_packages(longmix.__path__, "longmix."))
@pytest.mark.parametrize("module", MODULES)
def test_doctests(module):
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(mod, module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples in {module} failed (see stdout)"


def test_public_modules_have_examples():
    """The package, the API and every mechanism file carry a runnable example."""
    mechs = importlib.import_module("longmix.mechanisms")  # (longmix.mechanisms is also the function)
    must = ["longmix", "longmix.api", "longmix.registry", "longmix.feature_maps"] + \
        [m.name for m in pkgutil.iter_modules(mechs.__path__, "longmix.mechanisms.") if m.name != "longmix.mechanisms.base"]
    for module in must:
        tests = doctest.DocTestFinder().find(importlib.import_module(module), module)
        assert sum(len(t.examples) for t in tests) > 0, f"{module} has no docstring example"
