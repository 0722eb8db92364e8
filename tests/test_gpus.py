"""GPU leasing, tested with fake device lists (no GPU needed)."""
import signal
import subprocess
import sys

import pytest

from bnopt.running.gpus import lease_gpu, mps_active, sharing_note, visible_devices


def test_visible_devices_honour_cuda_visible_devices():
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "GPU-ab12,GPU-cd34"}) == ["GPU-ab12", "GPU-cd34"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_devices({}, count=3) == ["0", "1", "2"]


def test_concurrent_leases_get_distinct_devices(tmp_path):
    a = lease_gpu(tmp_path, ["2", "3"])
    b = lease_gpu(tmp_path, ["2", "3"])
    assert (a.device_id, a.device) == ("2", "cuda:0") and (b.device_id, b.device) == ("3", "cuda:1")
    with pytest.raises(RuntimeError, match="--resources gpu=N"):
        lease_gpu(tmp_path, ["2", "3"], timeout_s=0.2, poll_s=0.05)
    a.release()
    c = lease_gpu(tmp_path, ["2", "3"])
    assert c.device_id == "2"
    b.release()
    c.release()


def test_no_visible_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="no GPU is visible"):
        lease_gpu(tmp_path, [])


def test_lease_is_freed_when_its_process_is_killed(tmp_path):
    code = ("import time; "
            f"from bnopt.running.gpus import lease_gpu; l = lease_gpu({str(tmp_path)!r}, ['0']); "
            "print('leased', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "leased"
    with pytest.raises(RuntimeError):
        lease_gpu(tmp_path, ["0"], timeout_s=0.2, poll_s=0.05)  # held by the child
    child.send_signal(signal.SIGKILL)
    child.wait()
    lease = lease_gpu(tmp_path, ["0"], timeout_s=5, poll_s=0.05)
    assert lease.device_id == "0"
    lease.release()


def test_jobs_per_gpu_spread_over_devices_before_sharing_one(tmp_path):
    leases = [lease_gpu(tmp_path, ["0", "1"], slots=2) for _ in range(4)]
    assert [(le.device_id, le.lock_path.name) for le in leases] == [
        ("0", "gpu-0.lock"), ("1", "gpu-1.lock"), ("0", "gpu-0.1.lock"), ("1", "gpu-1.1.lock")]
    with pytest.raises(RuntimeError, match=r"times jobs_per_gpu \(2\)"):
        lease_gpu(tmp_path, ["0", "1"], timeout_s=0.2, poll_s=0.05, slots=2)
    leases[2].release()  # a freed slot is taken again
    again = lease_gpu(tmp_path, ["0", "1"], slots=2)
    assert (again.device_id, again.device) == ("0", "cuda:0")
    for le in [*leases[:2], leases[3], again]:
        le.release()


def test_a_gpu_shared_without_mps_is_noted_in_the_job_log(tmp_path):
    """jobs_per_gpu > 1 pays only under CUDA MPS (BENCHMARKS.md, "Several jobs on one GPU"): a
    job that may share its GPU says so when no MPS daemon's control pipe is there."""
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(tmp_path)}
    assert sharing_note(1, env) is None and not mps_active(env)
    note = sharing_note(4, env)
    assert "jobs_per_gpu = 4" in note and "MPS" in note and "jobs_per_gpu: 1" in note
    (tmp_path / "control").touch()  # what nvidia-cuda-mps-control -d creates
    assert mps_active(env) and sharing_note(4, env) is None
