"""The benchmarks run on real model folders (their figures are recorded in docs/performance.md, not asserted)."""
import shutil


def test_the_model_comparison_runs_a_prediction_and_each_maps_request(tiny_model_dir, tmp_path, capsys):
    from benchmarks import speed

    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    speed.models([str(tiny_model_dir), str(copy)], repeats=1)
    table = capsys.readouterr().out
    for what in ("prediction", "/explain request, coarse map"):
        rows = [line for line in table.splitlines() if f"| {what} |" in line]
        assert len(rows) == 2 and rows[0].endswith("| 1.00x |"), table
        assert str(copy) in rows[1], table


def test_the_finetune_step_runs_under_each_cpu_allocator(tmp_path, capsys):
    from synthetic import tiny_config

    from benchmarks import finetune_step

    config = tiny_config(tmp_path, tmp_path / "run")  # a tiny MobileNetV2 at 96 px; no photo is read
    finetune_step.allocators([str(config)], steps=1)
    table = capsys.readouterr().out
    for name in finetune_step.ALLOCATORS:
        row = next(line for line in table.splitlines() if f"| {name} |" in line)
        seconds, photos, user, kernel = (float(cell) for cell in row.strip("| ").split(" | ")[2:])
        assert seconds > 0 and photos > 0 and user > 0 and kernel >= 0, row
