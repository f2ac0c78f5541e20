"""The README's commands stay true: every `python <script>.py key=value ...` line composes with the
config its command reads (a renamed key, group or option fails here); tests/test_pipeline.py runs the
blocks marked runnable on the shipped sample."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import ROOT, readme_commands

COMMANDS = readme_commands()
HYDRA_APPS = {"pipeline.py": "pipeline", "train.py": "train", "embed.py": "embed", "stack.py": "stack",
              "daily.py": "daily", "fetch.py": "fetch"}


def test_the_readme_names_every_command_and_marks_runnable_blocks():
    scripts = {words[0] for _, words in COMMANDS}
    assert set(HYDRA_APPS) <= scripts
    runnable = [words[0] for marked, words in COMMANDS if marked]
    assert runnable == ["train.py", "embed.py", "stack.py", "stack.py", "daily.py"]


@pytest.mark.parametrize("words", [words for _, words in COMMANDS], ids=[" ".join(w) for _, w in COMMANDS])
def test_every_readme_command_composes(words):
    script, *args = words
    overrides = [arg for arg in args if arg != "-m"]
    # A multirun's sweep (a=x,y) composes as each of its values would; the first stands for them.
    overrides = [arg.split(",")[0] if "=" in arg and "[" not in arg else arg for arg in overrides]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=HYDRA_APPS[script], overrides=overrides)  # struct: an unknown key fails
    assert cfg.paths.artifacts_dir and (script == "fetch.py" or cfg.data.hourly_path)
