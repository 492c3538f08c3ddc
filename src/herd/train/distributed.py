"""Processes, devices and model sharding with PyTorch's own engine (Llama 3 §3.3.2).

One process per device, started by ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``); a plain ``herd pretrain`` is one process.
The model is replicated with DDP, sharded with FSDP2 (``fully_shard`` per
Transformer block, then the root: ZeRO-3, as Llama 3's FSDP), and on GPUs its
attention/FFN matmuls can be split across ``tp`` devices with DTensor tensor
parallelism (Megatron-style column/row splits, Shoeybi et al. 2019), data
parallel across the rest. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from herd.errors import ConfigError
from herd.model.transformer import Transformer
from herd.train.config import ParallelConfig


@dataclass
class Runtime:
    """Where this process runs and who its peers are."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of ``value`` over all processes (a float64 scalar on CPU)."""
        if self.distributed:
            value = value.detach().to(self.device, torch.float64).clone()
            dist.all_reduce(value)
        return value.detach().cpu().double()


def quiet_other_ranks(rank: int) -> None:
    """Hide Python warnings on every process but rank 0.

    Every process runs the same code, so a library's warning (PyTorch's, under
    torchrun or from DCP) would be printed once per process; rank 0 prints it
    for all of them.
    """
    if rank != 0:
        warnings.simplefilter("ignore")


def init_runtime(device: str) -> Runtime:
    """Join the torchrun process group if there is one, and pick this process's device.

    Only rank 0 shows library warnings from here on (:func:`quiet_other_ranks`).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    quiet_other_ranks(rank)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device is cuda but no GPU is visible")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None
        )
    return Runtime(rank, world_size, dev)


def shutdown(runtime: Runtime) -> None:
    """Leave the process group without the teardown deadlock of gloo.

    A gloo worker thread frees each finished collective's work object, which
    needs the GIL; if the last reference to the process group is dropped (by
    DDP's reducer, under the GIL) while a worker still holds one, the group's
    destructor joins that thread and both wait forever. A final barrier, then
    a pause with the GIL released, lets the workers drain before teardown.
    """
    if runtime.distributed and dist.is_initialized():
        dist.barrier()
        time.sleep(0.2)
        dist.destroy_process_group()


def decoder(model: nn.Module) -> Transformer:
    """The Transformer whose blocks are sharded, recomputed and compiled: ``model``, or its ``transformer``.

    A model that wraps a decoder (a reward model's scalar head on a
    :class:`Transformer`, :class:`herd.posttrain.reward_model.RewardModel`)
    exposes it as ``transformer``.
    """
    found = model if isinstance(model, Transformer) else getattr(model, "transformer", None)
    if not isinstance(found, Transformer):
        raise TypeError(f"{type(model).__name__} is neither a Transformer nor has a 'transformer'")
    return found


def decoders(model: nn.Module) -> list[Transformer]:
    """Every Transformer of ``model`` whose blocks are sharded, recomputed and compiled, in module order.

    ``model`` itself, a wrapper's ``transformer`` (:func:`decoder`), or
    several: PPO trains the policy and the value model together
    (:class:`herd.posttrain.ppo.PolicyAndValue`, Llama 2 §3.2.3), and both
    decoders' blocks are sharded, not only the policy's. A TypeError when
    ``model`` holds none.
    """
    found = [module for module in model.modules() if isinstance(module, Transformer)]
    if not found:
        raise TypeError(f"{type(model).__name__} holds no Transformer")
    return found


def strategy_of(config: ParallelConfig, runtime: Runtime) -> str:
    """``none``, ``ddp`` or ``fsdp``: the data-parallel scheme over the non-TP processes."""
    if config.tp > 1 and runtime.world_size % config.tp:
        raise ConfigError(f"parallel.tp={config.tp} does not divide the {runtime.world_size} processes")
    if runtime.world_size // config.tp == 1:
        return "none"
    if config.strategy == "auto":
        return "fsdp" if config.tp > 1 else "ddp"  # TP composes with FSDP2 over the dp mesh, not DDP
    return config.strategy


def apply_tensor_parallel(model: Transformer, mesh: DeviceMesh) -> None:
    """Split each block's q/k/v and w1/w3 by output columns and wo/w2 by input rows.

    Each device then holds ``n_heads / tp`` heads and a slice of the FFN; the
    only communication is one all-reduce after wo and one after w2.
    """
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    tp = mesh.size()
    cfg = model.config
    if cfg.n_kv_heads % tp or cfg.hidden_dim % tp:
        raise ConfigError(
            f"parallel.tp={tp} must divide n_kv_heads ({cfg.n_kv_heads}) and hidden_dim ({cfg.hidden_dim})"
        )
    plan = {
        "attention.wq": ColwiseParallel(),
        "attention.wk": ColwiseParallel(),
        "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(),
        "feed_forward.w1": ColwiseParallel(),
        "feed_forward.w3": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(),
    }
    for block in model.layers:
        parallelize_module(block, mesh, plan)
        block.attention.n_heads //= tp
        block.attention.n_kv_heads //= tp


def parallelize(model: nn.Module, config: ParallelConfig, runtime: Runtime) -> tuple[nn.Module, str]:
    """Wrap ``model`` for the chosen scheme; returns the module to train and the scheme's name.

    FSDP2 shards each block of its :func:`decoders`, then the whole model (any
    other parameters, such as a reward model's head, with the root).
    """
    strategy = strategy_of(config, runtime)
    stacks = decoders(model)
    blocks = [block for stack in stacks for block in stack.layers]
    dp_mesh = None
    if config.tp > 1:
        mesh = init_device_mesh(
            runtime.device.type, (runtime.world_size // config.tp, config.tp), mesh_dim_names=("dp", "tp")
        )
        for stack in stacks:
            apply_tensor_parallel(stack, mesh["tp"])
        dp_mesh = mesh["dp"]
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        if dp_mesh is None:
            dp_mesh = init_device_mesh(runtime.device.type, (runtime.world_size,))
        for block in blocks:
            fully_shard(block, mesh=dp_mesh)
        fully_shard(model, mesh=dp_mesh)
        return model, strategy
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        if config.tp > 1:
            raise ConfigError(
                "parallel.tp > 1 needs parallel.strategy = 'fsdp' across the data-parallel ranks"
            )
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids), strategy
    return model, strategy
