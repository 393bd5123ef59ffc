"""The README's code example runs as shown, and leaves behind the store the README says."""

import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
[CODE] = re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_readme_example_runs(rt):
    namespace: dict = {}
    exec(compile(CODE, "README.md", "exec"), namespace)
    hero = namespace["hero"]
    heard = rt.listen(hero)
    rt.wait_for(namespace["done"])
    rt.reload()
    rt.advance(60)
    assert heard.take() == ["Sum: 499999500000", "Tea's ready."]


def _run_as_a_script(code: str, cwd: pathlib.Path, **env: str) -> str:
    script = cwd / "example.py"
    script.write_text(code)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EVASYNC")}
    done = subprocess.run([sys.executable, str(script)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**environment, **env})
    assert done.returncode == 0, done.stderr
    script.unlink()
    return done.stdout


def _stored(path: pathlib.Path) -> tuple[list, list]:
    with sqlite3.connect(path) as db:
        objects = db.execute("SELECT key FROM objects").fetchall()
        tasks = db.execute("SELECT args FROM tasks").fetchall()
    return objects, tasks


def test_as_a_script_it_prints_nothing_and_leaves_evasync_db_here_with_hero_and_the_tea(tmp_path):
    assert "`evasync.db` in the current directory" in README
    assert _run_as_a_script(CODE, tmp_path) == ""
    assert (tmp_path / "evasync.db").exists() and (tmp_path / "evasync.db.lock").exists()
    assert _stored(tmp_path / "evasync.db") == ([("Hero",)], [('["Tea\'s ready."]',)])


def test_evasync_db_in_the_environment_puts_the_store_there(tmp_path):
    assert "`EVASYNC_DB=/path/to/game.db`" in README
    (tmp_path / "here").mkdir()
    _run_as_a_script(CODE, tmp_path / "here", EVASYNC_DB=str(tmp_path / "game.db"))
    assert not list((tmp_path / "here").iterdir())
    assert _stored(tmp_path / "game.db")[0] == [("Hero",)]


def test_a_runtime_made_first_puts_the_store_where_it_says(tmp_path):
    first = 'set_runtime(Runtime(db_path="/path/to/game.db"))'
    assert f"`{first}`" in README
    first = first.replace("/path/to", str(tmp_path))
    _run_as_a_script(f"from evasync import Runtime, set_runtime\n{first}\n{CODE}", tmp_path)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("evasync")]
    assert _stored(tmp_path / "game.db")[0] == [("Hero",)]


def test_under_a_virtual_runtime_it_leaves_no_file_behind(tmp_path):
    assert "`with VirtualRuntime() as rt:`" in README
    code = ("from evasync.testing import VirtualRuntime\n"
            "with VirtualRuntime() as rt:\n" + textwrap.indent(CODE, "    ") +
            "    rt.advance(60)\n")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    (tmp_path / "here").mkdir()
    assert _run_as_a_script(code, tmp_path / "here", TMPDIR=str(tmpdir)) == ""
    assert not list((tmp_path / "here").iterdir())
    assert not list(tmpdir.iterdir())
