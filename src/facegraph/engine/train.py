"""The training loop: orchestration only; the math lives in facegraph.graphs (losses) and facegraph.flops."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from facegraph.data import PreparedDataset, load_prepared, make_loader
from facegraph.engine import distributed, runs
from facegraph.engine.checkpoint import load_checkpoint, restore_rng_states, save_checkpoint
from facegraph.engine.config import RunConfig
from facegraph.engine.evaluate import evaluate_run, predict_split, summarize_predictions
from facegraph.engine.metrics import MetricsLog, topk_correct
from facegraph.engine.schedules import lr_factor, target_rates_at, temperature_at
from facegraph.errors import ConfigError, FacegraphError
from facegraph.flops import cost_table
from facegraph.graphs import training_loss
from facegraph.models import GatedResNet, autocast

logger = logging.getLogger(__name__)


class TrainingDiverged(FacegraphError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dataset_summary(dataset: PreparedDataset) -> dict:
    """dataset.json: what later commands need from the dataset without re-reading it."""
    return {
        "root": str(Path(dataset.root).resolve()), "image_size": dataset.image_size,
        "center_crop": dataset.center_crop, "mean": list(dataset.mean), "std": list(dataset.std),
        "identities": [identity.name for identity in dataset.identities], "features": dataset.features,
        "splits": {split: len(dataset.split_indices(split)) for split in dataset.splits},
    }


@dataclass
class EpochTotals:
    """Sums over the images of one epoch (reduced across ranks before use)."""

    images: float = 0.0
    loss: float = 0.0
    cross_entropy: float = 0.0
    target: float = 0.0
    iig: float = 0.0
    top1: float = 0.0
    top5: float = 0.0


def _resumes_checkpoint(out: Path, config: RunConfig, resume: bool) -> bool:
    """Whether `out` holds a checkpoint to continue from; refuses to overwrite a run or resume another config."""
    last = out / runs.CHECKPOINTS / "last.pt"
    if resume:
        if not last.exists():
            logger.info("no checkpoint in %s: starting from scratch", out)
            return False
        previous = runs.read_json(out / runs.CONFIG_FILE)
        if previous != config.to_dict():
            raise ConfigError(f"{out} was started with a different configuration; resume it with the same one "
                              f"(see {out / runs.CONFIG_FILE})")
        return True
    if (out / runs.METRICS_FILE).exists() or last.exists():
        raise FacegraphError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return False


def train(config: RunConfig, data_root: str | Path, out: str | Path, *, resume: bool = False) -> Path:
    """Train the configured model on a prepared dataset, writing the run directory `out`; returns it.

    Checkpoints each epoch (atomic), keeps the best on the val split, evaluates the test split once at the end.
    Under torchrun every rank trains its shard (DistributedDataParallel); only rank 0 writes.
    """
    out = Path(out)
    context = distributed.setup(config.train.device)
    try:
        return _train(config, data_root, out, resume, context)
    finally:
        distributed.teardown(context)


def _train(config: RunConfig, data_root: str | Path, out: Path, resume: bool, context: distributed.Context) -> Path:
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    seed_everything(config.train.seed + context.rank)
    dataset = load_prepared(data_root)
    if dataset.image_size != config.model.image_size:
        raise ConfigError(f"model.image_size is {config.model.image_size} but {dataset.root} holds "
                          f"{dataset.image_size} px images; prepare it at that size or --set model.image_size="
                          f"{dataset.image_size}")
    resuming = _resumes_checkpoint(out, config, resume) if context.is_main else False
    model = runs.model_from_config(config, dataset.num_identities)
    masks = runs.iig_masks(config, model.num_gates, dataset.features)
    mask_codes = [(m, dataset.attribute_codes(m.feature)) for m in masks]
    model.to(context.device)
    if config.train.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.optim.lr, momentum=config.optim.momentum,
                                weight_decay=config.optim.weight_decay, nesterov=config.optim.nesterov)
    train_loader = make_loader(dataset, "train", config.train.batch_size, train=True, seed=config.train.seed,
                               augment=config.data.augment, num_replicas=context.world_size, rank=context.rank,
                               drop_last=True)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size {config.train.batch_size} exceeds the training split of {dataset.root}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, steps_per_epoch, config.train.epochs, config.optim.schedule, config.optim.warmup_epochs,
        config.optim.step_milestones, config.optim.step_gamma))
    has_val = config.data.val_split in dataset.splits
    val_loader = (make_loader(dataset, config.data.val_split, config.train.eval_batch_size, train=False,
                              seed=config.train.seed) if has_val else None)
    if not has_val and context.is_main:
        logger.warning("the dataset has no %r split: the last epoch's weights are kept as best", config.data.val_split)

    metrics = MetricsLog(out / runs.METRICS_FILE)
    start_epoch, best_val_top1 = 0, None
    resumed = distributed.broadcast_flag(resuming, context)
    if resumed:
        state = load_checkpoint(out / runs.CHECKPOINTS / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_states(state["rng"])
        start_epoch, best_val_top1 = state["epoch"], state["best_val_top1"]
        if context.is_main:
            metrics.keep_epochs(start_epoch)
            logger.info("resuming %s after epoch %d", out, start_epoch)
    elif context.is_main:
        out.mkdir(parents=True, exist_ok=True)
        runs.write_json(out / runs.CONFIG_FILE, config.to_dict())
        runs.write_json(out / runs.ENVIRONMENT_FILE, runs.environment(context.world_size, str(context.device)))
        runs.write_json(out / runs.DATASET_FILE, dataset_summary(dataset))

    # fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not (the scaler is then a no-op).
    scaler = torch.amp.GradScaler(context.device.type, enabled=config.train.precision == "fp16")
    if resumed and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    table = cost_table(model, dataset.image_size)
    ddp_model = DistributedDataParallel(model) if context.distributed else model
    writer = _tensorboard_writer(out) if context.is_main else None
    for epoch in range(start_epoch, config.train.epochs):
        model.temperature = temperature_at(epoch, config.train.epochs, config.gumbel.temperature,
                                           config.gumbel.final_temperature)
        target_rates = target_rates_at(epoch, config.loss.target_warmup_epochs, model.gated_target_rates())
        train_loader.set_epoch(epoch)
        started = time.perf_counter()
        train_stats = _train_one_epoch(ddp_model, model, train_loader, optimizer, scheduler, scaler, mask_codes,
                                       target_rates.to(context.device), config, context, epoch)
        row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "temperature": model.temperature,
               "target_rates": target_rates.tolist(), "train": train_stats}
        if context.is_main:
            if val_loader is not None:
                val = summarize_predictions(predict_split(model, val_loader, config.train.precision, context.device),
                                            table)
                row["val"] = {k: val[k] for k in ("top1", "top5", "gate_rates")}
                row["val"].update(gmacs_mean=val["gmacs"]["mean"], gmacs_std=val["gmacs"]["std"])
            row["seconds"] = time.perf_counter() - started
            val_top1 = row.get("val", {}).get("top1")
            improved = val_top1 is None or best_val_top1 is None or val_top1 > best_val_top1
            if improved:
                best_val_top1 = val_top1
            checkpoints = out / runs.CHECKPOINTS
            for name in ("last", "best") if improved else ("last",):
                save_checkpoint(checkpoints / f"{name}.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, epoch=epoch + 1, best_val_top1=best_val_top1)
            metrics.append(row)
            _log_epoch(row, writer)
        distributed.barrier(context)
    if writer is not None:
        writer.close()
    if context.is_main:
        if "test" in dataset.splits:
            evaluate_run(out, "test", dataset=dataset)
        runs.write_json(out / runs.DONE_FILE, {"epochs": config.train.epochs, "best_val_top1": best_val_top1})
    distributed.barrier(context)
    return out


def _train_one_epoch(ddp_model: torch.nn.Module, model: GatedResNet, loader, optimizer, scheduler, scaler,
                     mask_codes, target_rates: torch.Tensor, config: RunConfig, context: distributed.Context,
                     epoch: int) -> dict:
    ddp_model.train()
    totals = EpochTotals()
    gate_sums = torch.zeros(model.num_gates, dtype=torch.float64)
    loss_weights = {"target_weight": config.loss.target_weight if config.model.variant != "resnet" else 0.0,
                    "iig_weight": config.loss.iig_weight if config.model.variant == "iig" else 0.0,
                    "iig_balanced": config.loss.iig_balanced}
    wait_seconds = 0.0
    started = time.perf_counter()
    progress = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{config.train.epochs}", leave=False,
                    disable=True if not context.is_main else None, unit="batch")  # None: only on a terminal
    batches = iter(loader)
    for step in range(len(loader)):
        waited = time.perf_counter()
        batch = next(batches)
        wait_seconds += time.perf_counter() - waited
        images = batch.images.to(context.device, non_blocking=True)
        identities = batch.identities.to(context.device, non_blocking=True)
        if config.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(config.train.precision, context.device.type):
            logits, gate_values = ddp_model(images)
        iig_features = [(masks, codes[batch.indices].to(context.device)) for masks, codes in mask_codes]
        parts = training_loss(logits.float(), identities, gate_values.float(), target_rates,
                              iig_features=iig_features, **loss_weights)
        if not torch.isfinite(parts.total):
            raise TrainingDiverged(f"the loss became {parts.total.item()} at epoch {epoch + 1}, step {step + 1} "
                                   f"(cross-entropy {parts.cross_entropy.item()}, target {parts.target.item()}, "
                                   f"iig {parts.iig.item()}); lower optim.lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(parts.total).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        count = images.shape[0]
        hits = topk_correct(logits.detach(), identities)
        totals.images += count
        totals.loss += parts.total.item() * count
        totals.cross_entropy += parts.cross_entropy.item() * count
        totals.target += parts.target.item() * count
        totals.iig += parts.iig.item() * count
        totals.top1 += hits[1].sum().item()
        totals.top5 += hits[5].sum().item()
        gate_sums += gate_values.detach().double().sum(0).cpu()
        progress.update()
        progress.set_postfix(loss=f"{parts.total.item():.3f}")
    progress.close()
    elapsed = time.perf_counter() - started
    reduced = distributed.all_reduce_sum(
        torch.tensor([*vars(totals).values(), *gate_sums.tolist()], dtype=torch.float64), context)
    sums = dict(zip(vars(totals), reduced[: len(vars(totals))].tolist()))
    images = sums.pop("images")
    stats = {key: value / images for key, value in sums.items()}
    stats["gate_rates"] = (reduced[len(vars(totals)):] / images).tolist()
    stats["images_per_s"] = images / elapsed
    stats["data_wait_fraction"] = wait_seconds / elapsed
    return stats


def _tensorboard_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _log_epoch(row: dict, writer) -> None:
    train_stats, val = row["train"], row.get("val", {})
    logger.info("epoch %d: loss %.3f, train top-1 %.1f%%, val top-1 %s, %.0f images/s", row["epoch"],
                train_stats["loss"], 100 * train_stats["top1"],
                f"{100 * val['top1']:.1f}%" if val else "n/a", train_stats["images_per_s"])
    if writer is None:
        return
    for split, values in (("train", train_stats), ("val", val)):
        for key, value in values.items():
            if isinstance(value, float):
                writer.add_scalar(f"{split}/{key}", value, row["epoch"])
