"""The path for users who outgrow one machine, exercised: `accelerate_configs/multi_node.yaml` run as two nodes on
this machine (loopback address, one CPU process per node, one `accelerate launch` per node with `--machine_rank 0`
and `1`) trains the same weights as the two-process run (`torchrun --nproc_per_node 2`).

The two nodes share this machine's disk, as nodes on a shared file system do; only the main process writes.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT
from safetensors.torch import load_file
from test_distributed import (  # noqa: F401  (bert_no_dropout and text_data are fixtures)
    CONFIG_DIR,
    PER_DEVICE_TRAIN_BATCH,
    _flags,
    _free_port,
    _launch_two_processes,
    bert_no_dropout,
    text_data,
)

SCRIPT = os.path.join(ROOT, "recipes", "text_classification.py")


def node_command(rank: int, port: int, flags: list[str]) -> list[str]:
    """One node's launch line, as the README gives it, for two one-process CPU nodes on the loopback address."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", os.path.join(CONFIG_DIR, "multi_node.yaml"),
        "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
        "--num_machines", "2", "--num_processes", "2", "--gpu_ids", "-1", "--mixed_precision", "no",
        SCRIPT, *flags,
    ]  # fmt: skip


@pytest.mark.distributed
def test_two_nodes_train_the_weights_of_two_processes(bert_no_dropout, text_data, tmp_path):  # noqa: F811
    nodes, processes = tmp_path / "two_nodes", tmp_path / "two_processes"
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    flags = _flags(bert_no_dropout, text_data, nodes, PER_DEVICE_TRAIN_BATCH, [])
    launched = [
        subprocess.Popen(node_command(rank, port, flags), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for rank in (0, 1)
    ]
    logs = [process.communicate(timeout=600)[0].decode(errors="replace") for process in launched]
    for rank, (process, log) in enumerate(zip(launched, logs, strict=True)):
        assert process.returncode == 0, f"node {rank}:\n{log[-3000:]}"
        assert "World size 2 (distributed)" in log, f"node {rank} did not join the group:\n{log[-2000:]}"
    _launch_two_processes("torchrun", SCRIPT, _flags(bert_no_dropout, text_data, processes, PER_DEVICE_TRAIN_BATCH, []))

    on_nodes, on_processes = load_file(nodes / "model.safetensors"), load_file(processes / "model.safetensors")
    assert on_nodes.keys() == on_processes.keys()
    for name, value in on_processes.items():
        assert on_nodes[name].equal(value), name
    results = [json.loads((folder / "all_results.json").read_text()) for folder in (nodes, processes)]
    for key in ("train_loss", "eval_accuracy", "eval_loss", "train_samples"):
        assert results[0][key] == results[1][key], key
