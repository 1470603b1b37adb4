"""The ``accelerate launch`` command for N GPUs on M nodes (printed by ``--print-launch``, or run).

Every process runs ``python -m cftdata.train train ...``, which trains in-process because
``accelerate`` sets ``LOCAL_RANK``/``WORLD_SIZE``. DeepSpeed settings come from the packaged JSON
(``--deepspeed_config_file``); the accelerate config only says "DeepSpeed, ZeRO-3 init, standard
multi-node launcher", so one file serves any node count. Gradient accumulation is derived from the
world size inside each process (see :func:`cftdata.train.config.gradient_accumulation`); the plan
prints it so the global batch can be checked before anything starts.

No heavy imports here.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cftdata.errors import CftdataError
from cftdata.train.config import CONFIG_DIR, TrainConfig, deepspeed_config_path, gradient_accumulation

__all__ = ["MACHINE_RANK", "MAIN_PROCESS_IP", "LaunchPlan", "build_launch", "in_launched_process", "python_launcher"]

#: Shell placeholders written into multi-node commands (each node sets them before running it).
MACHINE_RANK = '"$MACHINE_RANK"'
MAIN_PROCESS_IP = '"$MAIN_PROCESS_IP"'
DEFAULT_PORT = 29500


@dataclass
class LaunchPlan:
    """A launch command and the batch arithmetic behind it."""

    argv: list[str]
    gpus: int
    nodes: int
    per_device_batch: int
    grad_accum: int
    global_batch: int
    deepspeed_config: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def gpus_per_node(self) -> int:
        """GPUs (processes) on each node."""
        return self.gpus // self.nodes

    def command(self) -> str:
        """The command as one shell line; placeholders (``"$MACHINE_RANK"``) are left for the shell."""
        return " ".join(a if a in (MACHINE_RANK, MAIN_PROCESS_IP) else shlex.quote(a) for a in self.argv)

    def render(self) -> str:
        """Comment lines (batch arithmetic, multi-node instructions) and the command, wrapped with ``\\``."""
        lines = [f"# {line}" for line in self.notes]
        parts: list[str] = []
        cur: list[str] = []
        for a in self.argv:
            q = a if a in (MACHINE_RANK, MAIN_PROCESS_IP) else shlex.quote(a)
            if a.startswith("-") and cur and not cur[-1].endswith("launch"):
                parts.append(" ".join(cur))
                cur = []
            cur.append(q)
        parts.append(" ".join(cur))
        lines.append(" \\\n    ".join(parts))
        return "\n".join(lines)


def in_launched_process() -> bool:
    """True inside a process started by accelerate/torchrun (so training must run in-process)."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def _abs_if_local(p: str) -> str:
    path = Path(p).expanduser()
    return str(path.resolve()) if path.exists() else p


def build_launch(
    data: str,
    model: str,
    config_name: str,
    config: TrainConfig,
    output_dir: str,
    overrides: tuple[str, ...] | list[str] = (),
    gpus: int = 8,
    nodes: int = 1,
    extra_args: tuple[str, ...] | list[str] = (),
    machine_rank: str | int | None = None,
    main_process_ip: str | None = None,
    main_process_port: int = DEFAULT_PORT,
    executable: tuple[str, ...] = ("accelerate", "launch"),
) -> LaunchPlan:
    """Build the ``accelerate launch`` command that trains on ``gpus`` GPUs spread over ``nodes`` nodes.

    Args:
        gpus: Total number of GPUs (processes) over all nodes.
        nodes: Number of machines; ``gpus`` must be a multiple of it.
        machine_rank, main_process_ip: Filled in when known (the command is being run); left as the
            shell placeholders ``"$MACHINE_RANK"`` / ``"$MAIN_PROCESS_IP"`` when printing.
        executable: ``("accelerate", "launch")`` for printing; ``(python, "-m",
            "accelerate.commands.launch")`` to run with this interpreter.

    Raises:
        cftdata.errors.CftdataError: impossible GPU/node counts, or a global batch that cannot be kept.
    """
    if nodes < 1 or gpus < 1:
        raise CftdataError(f"--gpus and --nodes must be at least 1 (got {gpus} GPUs, {nodes} nodes).")
    if gpus % nodes:
        raise CftdataError(f"--gpus is the total over all nodes and must be a multiple of --nodes "
                           f"(got {gpus} GPUs on {nodes} nodes).")
    if config.device == "cpu":
        raise CftdataError(f"Config {config.name} trains on the CPU (device: cpu); a multi-GPU launch makes no "
                           "sense with it. Use --config reference-8xh100 or --set device=auto.")
    accum = gradient_accumulation(config, gpus)
    ds = deepspeed_config_path(config)
    accel_cfg = CONFIG_DIR / "accelerate" / ("deepspeed_zero3.yaml" if ds else "multi_gpu.yaml")
    argv = [*executable, "--config_file", str(accel_cfg)]
    if ds:
        argv += ["--deepspeed_config_file", str(ds)]
    argv += ["--mixed_precision", "bf16" if config.bf16 else "no",
             "--num_processes", str(gpus), "--num_machines", str(nodes)]
    if nodes > 1:
        argv += ["--machine_rank", MACHINE_RANK if machine_rank is None else str(machine_rank),
                 "--main_process_ip", MAIN_PROCESS_IP if main_process_ip is None else main_process_ip,
                 "--main_process_port", str(main_process_port)]
    cfg = config_name if (CONFIG_DIR / f"{config_name}.yaml").is_file() else _abs_if_local(config_name)
    argv += ["-m", "cftdata.train", "train", _abs_if_local(data), "--model", _abs_if_local(model),
             "--config", cfg, "--output-dir", str(Path(output_dir).expanduser().resolve())]
    for item in overrides:
        argv += ["--set", item]
    argv += list(extra_args)
    per_node = gpus // nodes
    notes = [
        f"{gpus} GPU(s) on {nodes} node(s), {per_node} per node: global batch "
        f"{config.per_device_train_batch_size * gpus * accum} = {config.per_device_train_batch_size} per device "
        f"x {gpus} GPUs x {accum} gradient accumulation steps",
        f"DeepSpeed config: {ds}" if ds else "DeepSpeed: off (plain data parallel)",
    ]
    if nodes > 1:
        notes += [
            f"Run this same command on each of the {nodes} nodes, after setting there:",
            f"  MACHINE_RANK=0 on the main node, {'1' if nodes == 2 else f'1..{nodes - 1}'} on the "
            f"{'other' if nodes == 2 else 'others'};",
            "  MAIN_PROCESS_IP=<the main node's address, reachable from every node>",
            f"  (port {main_process_port} open between the nodes). DATA, MODEL and the output folder must be on "
            "a shared filesystem at the same paths on every node.",
        ]
    return LaunchPlan(argv=argv, gpus=gpus, nodes=nodes, per_device_batch=config.per_device_train_batch_size,
                      grad_accum=accum, global_batch=config.per_device_train_batch_size * gpus * accum,
                      deepspeed_config=ds, notes=notes)


def python_launcher() -> tuple[str, ...]:
    """``accelerate launch`` through this interpreter (used when ``cftdata train`` launches itself)."""
    return (sys.executable, "-m", "accelerate.commands.launch")
