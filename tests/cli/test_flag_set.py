"""One set of flags (README: every command takes --no-progress and --quiet), messages that name flags the
command has, and errors a user understands (a wrong type names the field and the type, an unknown field the
nearest names)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
import sys

import pytest
from absl import flags
from conftest import ROOT

from dng_jax import (classical, cli, cluster, evaluate, export_labels, pack, plan, predict, report, summary, sweep,
                     tfds_dsb2018, train, variants)
from dng_jax.segmentation.bundled import bundled_info, describe_bundled

ARGPARSE_COMMANDS = {"predict": predict.main, "classical": classical.main, "cluster": cluster.main,
                     "report": report.main, "summary": summary.main, "export_labels": export_labels.main,
                     "pack": pack.main, "variants": variants.main, "tfds_dsb2018": tfds_dsb2018.main,
                     "evaluate": evaluate.main, "evaluate networks": lambda a: evaluate.main(["networks", *a]),
                     "evaluate seeds": lambda a: evaluate.main(["seeds", *a]),
                     "evaluate checkpoint": lambda a: evaluate.main(["checkpoint", *a])}
#: The commands that read a collection: each takes --data, the flag the data errors name.
DATA_COMMANDS = ("summary", "export_labels", "pack", "variants", "tfds_dsb2018", "evaluate networks",
                 "evaluate checkpoint")


def help_text(name, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        ARGPARSE_COMMANDS[name](["--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(ARGPARSE_COMMANDS))
def test_every_command_takes_quiet_and_no_progress(name, capsys):
    text = help_text(name, capsys)
    assert "--no-progress" in text and "--quiet" in text, text
    if name in DATA_COMMANDS:
        assert "--data" in text


def test_the_config_commands_take_the_same_flags():
    """train, sweep and plan (absl): --quiet and --no-progress, and --data as --config.data.path."""
    argv, shown = cli.normalise_argv(["sweep", "--data", "my_study", "--no-progress", "--data=b", "--config.help"])
    assert argv == ["sweep", "--config.data.path=my_study", "--noprogress", "--config.data.path=b"] and shown
    for module in (sweep, train, plan):
        assert "--data PATH" in module.__doc__ and "--quiet" in module.__doc__, module.__name__


def test_the_data_errors_name_flags_the_commands_have(tmp_path, capsys):
    assert summary.main(["--data", str(tmp_path / "nope.zip"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    named = set(re.findall(r"--[a-z][\w.-]*", err))
    assert named == {"--data", "--config.data.path"}, err
    # --data on every command that reads data; --config.data.path on the config-driven ones (--data too)
    assert "images/<id>.png + masks/<id>.png" in err and "<id>/images/<id>.png + <id>/masks/*.png" in err


def test_a_value_of_the_wrong_type_names_the_field_and_the_type():
    e = flags.IllegalFlagValueError("flag --config.train.epochs=abc: invalid literal for int() with base 10: 'abc'")
    assert cli.value_message(e) == "config field train.epochs: expected an integer, got 'abc'"
    e = flags.IllegalFlagValueError("flag --config.train.lr=x: could not convert string to float: 'x'")
    assert cli.value_message(e) == "config field train.lr: expected a number, got 'x'"
    other = flags.IllegalFlagValueError("flag --time_steps=x: invalid literal")
    assert cli.value_message(other) == "flag --time_steps=x: invalid literal (see --help)"


def test_an_unknown_field_gets_the_nearest_names():
    msg = cli.field_message(KeyError("'learning_rate'"), ["train", "--config.train.learning_rate=0.1"])
    assert msg.startswith("no such config field: train.learning_rate (did you mean train.lr,")
    assert "retrain.learning_rate" in msg and "--config.help lists the fields" in msg
    assert "sweep.seeds" in cli.field_message(KeyError("'seedz'"), ["sweep", "--config.sweep.seedz=3"])


def test_model_info_names_the_recipe_beside_the_model(capsys):
    info = bundled_info()
    line = describe_bundled(info)
    assert line.startswith("bundled:cpu_real ") and info["provenance"]["config_file"] in line
    assert "configs/cpu_real_unseen.py" in line and f"seed {info['config']['train']['seed']}" in line
    assert predict.main(["--model-info", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == line
    assert "configs/cpu_real_unseen.py" in predict.__doc__ and "baseline of configs/cpu_real.py" not in predict.__doc__


def test_log_lines_go_to_the_stdout_of_the_moment(capsys):
    """A command's progress lines (cli.show_log) follow sys.stdout: a later command in the same process whose
    stdout is another stream (the next test's capture) gets them, none goes to a closed stream."""
    cli.show_log("dng_jax.test_flag_set", "t")
    later = io.StringIO()
    with contextlib.redirect_stdout(later):
        logging.getLogger("dng_jax.test_flag_set").info("a line")
    assert later.getvalue().endswith("] a line\n") and capsys.readouterr().out == ""


def test_train_help_promises_only_what_it_writes():
    doc = train.__doc__
    assert "manifest.json  only for data without cell types of its own" in doc


@pytest.mark.slow
def test_config_command_lines_say_it_in_words(tmp_path):
    """As a user runs them: a wrong type, an unknown field, --data (one process each; --help: test_cli_errors.py)."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    wd = tmp_path / "w"
    proc = run("dng_jax.train", "--workdir", str(wd), "--config.train.epochs=abc")
    assert proc.returncode == 2 and proc.stderr == "error: config field train.epochs: expected an integer, got 'abc'\n"
    proc = run("dng_jax.sweep", "--workdir", str(wd), "--config.train.learning_rate=0.1")
    assert proc.returncode == 2 and "did you mean train.lr" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run("dng_jax.sweep", "--config", "configs/cpu_real.py", "--workdir", str(wd), "--data",
               str(tmp_path / "nope.zip"), "--quiet")
    assert proc.returncode == 2 and "nope.zip: no such file or folder; give --data" in proc.stderr, proc.stderr
    assert not wd.exists()
