"""Output a person can read: progress in a log file is a line every N seconds, not one per redraw."""

import io

from conftest import TINY, synthetic_dataset

from lawr_ext.configs.train import load_train_config
from lawr_ext.runners import train
from lawr_ext.utils import cli
from lawr_ext.utils.cli import LineProgress, one_line


def test_progress_without_a_terminal_is_a_line_every_interval_and_one_at_the_end(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(cli.time, "monotonic", lambda: float(next(clock)))  # one second per call
    log = io.StringIO()
    bar = LineProgress(total=100, desc="flow", unit="step", interval_s=10, file=log)
    for _ in range(100):
        bar.update(1)
    bar.set_postfix({"loss": "0.12"})
    bar.close()
    bar.close()  # closing twice writes nothing more
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 9 <= len(lines) <= 11  # ~100 s at one line per 10 s
    assert lines[-1].startswith("flow: 100/100 step (100%)") and lines[-1].endswith("loss=0.12")


def test_a_training_logged_to_a_file_writes_a_few_lines_not_one_per_step(tmp_path, capsys, monkeypatch):
    """stderr is not a terminal under pytest, as in a log file: each stage ends in one line, no redraws."""
    monkeypatch.setattr(cli, "LOG_INTERVAL_S", 1e9)  # however slow this host: only the closing lines
    cfg = load_train_config("Bimanual-Chunk", TINY + ["progress=true", "flow.num_steps=50"])
    train(cfg, synthetic_dataset(tmp_path / "data.npz"), tmp_path / "run")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "\r" not in err and len(lines) == 3, err[-2000:]
    assert [line.split(":")[0] for line in lines] == ["flow", "critic", "planner"] and "50/50 step" in lines[0]


def test_an_os_error_is_one_line_naming_its_file():
    assert one_line(PermissionError(13, "Permission denied", "/runs/x/config.json")) == \
        "/runs/x/config.json: Permission denied"
    assert one_line(ValueError("a\n  b")) == "a b"


def test_overrides_typed_after_a_list_option_go_to_hydra_not_into_the_list():
    own, overrides = cli.split_overrides(["--methods", "lawr", "fql", "profile=ogbench_cpu", "--seeds", "0", "1",
                                          "+data.extra=1", "~eval", "--out=runs/b", "progress=false"])
    assert own == ["--methods", "lawr", "fql", "--seeds", "0", "1", "--out=runs/b"]
    assert overrides == ["profile=ogbench_cpu", "+data.extra=1", "~eval", "progress=false"]
