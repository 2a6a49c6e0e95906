"""`cpu_training.py` end to end at a toy size with the TensorFlow configuration only (PyTorch
and JAX are not mammoseg dependencies): workers start, alternate, and the record and table are
consistent with the model (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("cpu_training.py")


def test_cpu_training_alternates_and_reports(tmp_path: Path) -> None:
    from mammoseg.models import build_model, count_flops

    out = tmp_path / "cpu.json"
    command = [
        sys.executable, str(SCRIPT), "--variant", "dilated_resize", "--width", "0.125",
        "--image-size", "32", "--batch-size", "2", "--config", "keras-tf",
        "--extra", "keras-tf/inter1:TF_NUM_INTEROP_THREADS=1", "--rounds", "2", "--turn-seconds", "0.05",
        "--peak-seconds", "0.05", "--matmul-size", "256", "--warmup", "1", "--pause", "0", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(out.read_text())
    assert record["source"] == "measured" and "--turn-seconds" in record["command"]
    (group,) = record["figures"]["groups"]
    assert set(group["configs"]) == {"keras-tf", "keras-tf/inter1"} and not group["failed"]
    assert set(group["peak"]) == {"matmul-numpy", "matmul-tf"}
    assert len(group["load_average_1min"]) == 2 * 4  # two rounds of four workers
    flops = count_flops(build_model("dilated_resize", image_size=32, width=0.125))
    for name, config in group["configs"].items():
        assert config["meta"]["flops_forward_per_image"] == flops
        assert config["meta"]["jit_compile"] is False
        assert len(config["turns"]) == 2 and all(len(t["step_seconds"]) >= 2 for t in config["turns"])
        assert config["rate_min"] <= config["rate_median"] <= config["rate_max"]
    assert group["configs"]["keras-tf/inter1"]["environment"] == {"TF_NUM_INTEROP_THREADS": "1"}
    rows = record["tables"]["cpu-training"]["rows"]
    assert [row[:3] for row in rows[:2]] == [["dilated_resize", "0.125", "keras-tf"], ["dilated_resize", "0.125", "keras-tf/inter1"]]
    assert "float32 matmul 256x256 peak" in record["figures"]["peak_lines"][0]
