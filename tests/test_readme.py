"""The README's Python example runs as written (it is the first thing a user copies)."""
import pathlib
import re


def test_readme_python_example_runs():
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the README has a Python example"
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)  # noqa: S102
    assert ns["o1"].shape == (2, 1, 8, 64) and ns["state"].shape == (2, 8, 64, 64)
    assert ns["y"].shape == (2, 512, 256)
