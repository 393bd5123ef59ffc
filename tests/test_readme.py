"""The README's code example runs as shown."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_readme_example_runs(rt):
    [code] = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    hero = namespace["hero"]
    heard = rt.listen(hero)
    rt.wait_for(namespace["done"])
    rt.reload()
    rt.advance(60)
    assert heard.take() == ["Sum: 499999500000", "Tea's ready."]
