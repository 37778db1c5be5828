"""The training loop: orchestration only; the math lives in facegraph.graphs (losses) and facegraph.flops."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from facegraph import paper
from facegraph.config import RunConfig, config_differences, describe_differences
from facegraph.data import PreparedDataset, load_prepared, make_loader
from facegraph.engine import distributed
from facegraph.engine.annealing import linear_anneal, lr_factor, target_rates_at, training_epochs
from facegraph.engine.environment import environment
from facegraph.engine.evaluate import evaluate_run, predict_split, summarize_predictions
from facegraph.engine.metrics import checkpoint_rank, mean_open_rate, topk_correct
from facegraph.engine.warm_start import distillation_teacher, warm_start
from facegraph.errors import ConfigError, FacegraphError, StoppedWithRankZero
from facegraph.flops import cost_table
from facegraph.graphs import training_loss
from facegraph.models import GatedResNet, autocast
from facegraph.rundir import (BEST, LAST, OTHER_PHOTOS, PREPARED_AGAIN, RunDir, check_output_folder, dataset_difference,
                              dataset_fingerprint, load_training_checkpoint, preparation_fingerprint,
                              restore_rng_states, rng_states)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The keys a resumed run may change: a longer schedule (lengthening a finished or killed run), and whether TensorBoard
# logs it (nothing the model computes).
RESUMABLE_CHANGES = {("train", "epochs"), ("train", "tensorboard")}


class TrainingDiverged(FacegraphError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dataset_summary(dataset: PreparedDataset) -> dict:
    """dataset.json: what later commands need from the dataset without re-reading it, and its fingerprints (which
    photos and people; how their pixels were prepared)."""
    return {
        "root": str(Path(dataset.root).resolve()), "fingerprint": dataset_fingerprint(Path(dataset.root)),
        "preparation_fingerprint": preparation_fingerprint(dataset.info),
        **dataset.preprocessing(), "identities": [identity.name for identity in dataset.identities],
        "features": dataset.features,
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
    distill: float = 0.0
    top1: float = 0.0
    top5: float = 0.0


def check_resume(run: RunDir, config: RunConfig, dataset: dict, resume: bool) -> bool:
    """Whether `run` holds a run to continue. Refuses to overwrite a run, to resume what does not exist, and to
    resume with another configuration (except a longer `train.epochs`) or another dataset."""
    check_output_folder(run.path)
    if not resume:
        if run.config_path.exists() or run.metrics_path.exists() or run.checkpoint_path(LAST).exists():
            raise FacegraphError(f"{run.path} already holds a run; pass --resume to continue it or choose another --out")
        return False
    if not run.config_path.is_file():
        raise FacegraphError(f"--resume: {run.path} holds no run (no {run.config_path.name}); drop --resume to start one")
    differing = config_differences(run.config().to_dict(), config.to_dict())
    refused = [(key, a, b) for key, a, b in differing if key not in RESUMABLE_CHANGES]
    if refused:
        changes = describe_differences(refused)
        raise ConfigError(f"{run.path} was started with another configuration ({changes}); resume it with the same "
                          f"one (only train.epochs may grow)")
    previous_epochs = run.config().train.epochs
    if config.train.epochs < previous_epochs:
        raise ConfigError(f"--resume: train.epochs {config.train.epochs} is shorter than the run's {previous_epochs}")
    previous = run.dataset()
    difference = dataset_difference(previous, dataset["fingerprint"], dataset["preparation_fingerprint"])
    if difference == OTHER_PHOTOS or previous.get("identities") != dataset["identities"]:
        raise FacegraphError(f"--resume: {dataset['root']} is not the dataset {run.path} was trained on "
                             f"({previous.get('root')}: its manifest/identities fingerprint differs)")
    if difference == PREPARED_AGAIN:
        raise FacegraphError(f"--resume: {dataset['root']} was prepared again since {run.path} started (image size, "
                             f"crop or normalisation differ from what {run.dataset_path} records)")
    return True


def _check_device(config: RunConfig) -> None:
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but CUDA is not available here; use 'auto' or 'cpu'")
    wants_cuda = config.train.device == "cuda" or config.train.device == "auto" and torch.cuda.is_available()
    if config.train.precision == "fp16" and not wants_cuda:
        raise ConfigError("train.precision = 'fp16' needs CUDA; on a CPU use 'bf16' or 'fp32'")


def train(config: RunConfig, data_root: str | Path, out: str | Path, *, resume: bool = False) -> Path:
    """Train the configured model on a prepared dataset, writing the run directory `out`; returns it.

    Everything is validated before anything is written. Each epoch is committed atomically (rundir.commit_epoch),
    the best epoch on the val split is kept, and the test split is evaluated once at the end. Under torchrun every
    rank trains its shard (DistributedDataParallel); only rank 0 writes, holding the run's train.lock throughout, so
    that a second training of `out` fails at once.
    """
    _check_device(config)
    if config.model.init_from:  # recorded absolute, so that the run still names its start from another folder
        config = replace(config, model=replace(config.model, init_from=str(Path(config.model.init_from).resolve())))
    context = distributed.setup(config.train.device)
    try:
        with contextlib.ExitStack() as held:
            return _train(config, data_root, RunDir(Path(out)), resume, context, held)
    finally:
        distributed.teardown(context)


def _train(config: RunConfig, data_root: str | Path, run: RunDir, resume: bool, context: distributed.Context,
           held: contextlib.ExitStack) -> Path:
    """`held` keeps the run's lock until train() returns."""
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    seed_everything(config.train.seed + context.rank)
    dataset = paper.run_dataset(config, load_prepared(data_root))
    if config.data.folds and "test" not in dataset.splits:
        raise ConfigError(f"data.folds = {config.data.folds}: fold {config.data.fold} of {dataset.root} holds no test "
                          f"image ({len(dataset.samples)} photos); use fewer folds")
    paper.image_size(config, dataset.image_size)
    summary = dataset_summary(dataset)
    resuming = _decided_by_rank_zero(context, run, lambda: check_resume(run, config, summary, resume))
    resuming = distributed.broadcast_flag(bool(resuming), context)
    model = paper.model_from_config(config, dataset.num_identities)
    masks = paper.iig_masks(config, model.num_gates, dataset.features)
    weights = paper.loss_weights(config, masks, model.num_gates)
    mask_codes = [(m, dataset.attribute_codes(m.feature)) for m in masks]
    # Loaded before anything is written: a teacher that cannot teach this model stops the run at once.
    teacher = None
    if weights.distill_weight:
        teacher = distillation_teacher(config.model.init_from, summary["identities"], context.device)
    model.to(context.device)
    if config.train.channels_last:
        model.to(memory_format=torch.channels_last)
    gate_parameters = list(model.gates.parameters())
    gate_ids = {id(p) for p in gate_parameters}
    parameter_groups = [{"params": [p for p in model.parameters() if id(p) not in gate_ids]}]
    if gate_parameters:
        parameter_groups.append({"params": gate_parameters, "lr": config.optim.lr * config.optim.gate_lr_factor})
    optimizer = torch.optim.SGD(parameter_groups, lr=config.optim.lr, momentum=config.optim.momentum,
                                weight_decay=config.optim.weight_decay, nesterov=config.optim.nesterov)
    has_val = config.data.val_split in dataset.splits
    carved = dataset.info.get("validation_from_train")
    if carved:
        summary["val_from_train"] = carved["images"]
    train_loader = make_loader(dataset, "train", config.train.batch_size, train=True, seed=config.train.seed,
                               augment=config.data.augment, num_replicas=context.world_size, rank=context.rank,
                               drop_last=True)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size {config.train.batch_size} exceeds the training split of {dataset.root}")
    epochs = training_epochs(config.train.epochs, config.train.min_steps, steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, steps_per_epoch, epochs, config.optim.schedule, config.optim.warmup_epochs,
        config.optim.step_milestones, config.optim.step_gamma))
    val_loader = None
    if has_val:
        val_loader = make_loader(dataset, config.data.val_split, config.train.eval_batch_size, train=False,
                                 seed=config.train.seed)
        if carved and context.is_main:
            logger.info("the dataset has no %r split: %d training images (data.val_from_train = %g) choose the "
                        "checkpoint instead", config.data.val_split, carved["images"], config.data.val_from_train)
    elif context.is_main:
        logger.warning("the dataset has no %r split: the last epoch's weights are kept as best", config.data.val_split)
    # fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not (the scaler is then a no-op).
    scaler = torch.amp.GradScaler(context.device.type, enabled=config.train.precision == "fp16")

    start_epoch, best_val_top1, best_epoch, best_open_rate = 0, None, 0, None
    max_open_rate = _open_rate_budget(config, weights, model)
    if not resuming and config.model.init_from:
        warm_start(model, config.model.init_from, summary["identities"])  # weights that do not fit: nothing written
    def take_run() -> None:
        # The first write: from here on a second training of this run fails at once instead of interleaving.
        held.enter_context(run.training_lock())
        check_resume(run, config, summary, resume)  # again, under the lock: another training may have written since

    _decided_by_rank_zero(context, run, take_run)
    if resuming:
        start_epoch, best_val_top1, best_epoch, best_open_rate = _resume(run, config, summary, context, model,
                                                                         optimizer, scheduler, scaler)
    elif context.is_main:
        run.write_start(config, environment(context.world_size, str(context.device)), summary)

    table = cost_table(model, dataset.image_size)
    ddp_model = DistributedDataParallel(model) if context.distributed else model
    writer = _tensorboard_writer(run.path) if context.is_main and config.train.tensorboard else None
    if epochs > config.train.epochs and context.is_main:
        logger.info("%d optimizer steps per epoch: training %d epochs to reach train.min_steps = %d", steps_per_epoch,
                    epochs, config.train.min_steps)
    for epoch in range(start_epoch, epochs):
        model.temperature = linear_anneal(epoch, epochs, config.gumbel.temperature, config.gumbel.final_temperature)
        model.noise_scale = linear_anneal(epoch, epochs, config.gumbel.noise, config.gumbel.final_noise)
        target_rates = target_rates_at(epoch, config.loss.target_warmup_epochs, model.gated_target_rates())
        train_loader.set_epoch(epoch)
        started = time.perf_counter()
        train_stats = _train_one_epoch(ddp_model, model, train_loader, optimizer, scheduler, scaler, mask_codes,
                                       target_rates.to(context.device), weights, config, context, epoch, epochs,
                                       teacher)
        row = {"epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], "temperature": model.temperature,
               "gumbel_noise": model.noise_scale, "target_rates": target_rates.tolist(), "train": train_stats}
        if val_loader is not None and context.is_main:
            val = summarize_predictions(predict_split(model, val_loader, config.train.precision, context.device), table)
            row["val"] = {k: val[k] for k in ("top1", "top5", "gate_rates")}
            row["val"].update(gmacs_mean=val["gmacs"]["mean"], gmacs_std=val["gmacs"]["std"])
        row["seconds"] = time.perf_counter() - started
        val_top1 = row.get("val", {}).get("top1")
        val_open_rate = mean_open_rate(row.get("val", {}))
        selectable = epoch + 1 > config.train.select_from * epochs
        improved = selectable and (val_top1 is None or best_val_top1 is None
                                   or checkpoint_rank(val_top1, val_open_rate, max_open_rate)
                                   > checkpoint_rank(best_val_top1, best_open_rate, max_open_rate))
        if improved:
            best_val_top1, best_epoch, best_open_rate = val_top1, epoch + 1, val_open_rate
        # Every rank's generators, so that a resumed rank draws the noise it would have drawn.
        rng = distributed.gather_objects(rng_states(), context)
        if context.is_main:
            run.commit_epoch({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng,
                              "epoch": epoch + 1, "best_val_top1": best_val_top1, "best_epoch": best_epoch,
                              "best_val_open_rate": best_open_rate},
                             row, improved)
            _log_epoch(row, writer)
        distributed.barrier(context)
    if writer is not None:
        writer.close()
    if context.is_main:
        if "test" in dataset.splits:
            evaluate_run(run.path, "test", dataset=dataset, checkpoint=BEST, warn_unfinished=False)
        done = {"epochs": epochs, "best_epoch": best_epoch, "best_val_top1": best_val_top1}
        if max_open_rate is not None:
            done.update(best_val_open_rate=best_open_rate, max_val_open_rate=max_open_rate)
            if best_open_rate is not None and best_open_rate > max_open_rate:
                logger.warning("no selectable epoch kept the mean val open rate within %.3f: best.pt is epoch %d, "
                               "the lowest (%.3f)", max_open_rate, best_epoch, best_open_rate)
        run.write_done(done)
    distributed.barrier(context)
    return run.path


def _decided_by_rank_zero(context: distributed.Context, run: RunDir, decide: Callable[[], T]) -> T | None:
    """Rank 0's `decide()` (a check of the run directory, which only rank 0 reads and writes), None on the other ranks.
    When it fails, every rank stops with it, instead of the others failing later in a collective whose peer has gone:
    rank 0 raises its error, the others StoppedWithRankZero."""
    outcome, refused = None, None
    if context.is_main:
        try:
            outcome = decide()
        except (FacegraphError, OSError) as error:
            refused = error
    if distributed.broadcast_flag(refused is not None, context):
        raise refused or StoppedWithRankZero(f"rank 0 could not train {run.path}")
    return outcome


def _resume(run: RunDir, config: RunConfig, summary: dict, context: distributed.Context, model: GatedResNet,
            optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
            scaler: torch.amp.GradScaler) -> tuple[int, float | None, int, float | None]:
    """Bring the training to the run's last committed epoch (rank 0 recovers the run directory first) and record the
    resume; returns the epoch to start from, the best val top-1, its epoch and its mean val open rate."""
    state = run.recover() if context.is_main else None
    distributed.barrier(context)
    if not context.is_main:
        last = run.checkpoint_path(LAST)
        state = load_training_checkpoint(last) if last.is_file() else None
    start_epoch, best_val_top1, best_epoch, best_open_rate = 0, None, 0, None
    if state is None:
        # Killed before its first committed epoch: it starts again as a fresh run would, warm start included (loading
        # draws no random numbers, so training goes on from the seeded state an uninterrupted run has).
        if config.model.init_from:
            warm_start(model, config.model.init_from, summary["identities"])
    else:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if len(state["rng"]) != context.world_size:
            raise ConfigError(f"{run.path} was trained by {len(state['rng'])} process(es); resume it with as many "
                              f"(now {context.world_size})")
        restore_rng_states(state["rng"][context.rank])
        start_epoch, best_val_top1, best_epoch = state["epoch"], state["best_val_top1"], state["best_epoch"]
        best_open_rate = state.get("best_val_open_rate")  # absent from checkpoints written before the rate budget
        if context.is_main:
            logger.info("resuming %s after epoch %d", run.path, start_epoch)
    if context.is_main:
        # Recorded once the resume can go ahead (its checkpoint read, its world size matching).
        recorded_environment = run.record_resume(environment(context.world_size, str(context.device)))
        # A lengthened run records its new length, whether or not an epoch was committed before.
        if config.train.epochs > run.config().train.epochs:
            run.write_start(config, recorded_environment, summary)
            run.done_path.unlink(missing_ok=True)
    return start_epoch, best_val_top1, best_epoch, best_open_rate


def _open_rate_budget(config: RunConfig, weights: paper.LossWeights, model: GatedResNet) -> float | None:
    """The highest mean val open rate best.pt may have (train.select_rate_slack above the mean target rate), or None
    where there is no budget: no slack given, no gates, or gates that the target loss does not all pull."""
    if config.train.select_rate_slack is None or not model.num_gates:
        return None
    if weights.target_weight <= 0 or weights.target_gates is not None:
        return None
    return float(model.gated_target_rates().mean()) + config.train.select_rate_slack


def _train_one_epoch(ddp_model: torch.nn.Module, model: GatedResNet, loader, optimizer, scheduler, scaler,
                     mask_codes, target_rates: torch.Tensor, weights: paper.LossWeights, config: RunConfig,
                     context: distributed.Context, epoch: int, epochs: int,
                     teacher: GatedResNet | None = None) -> dict:
    ddp_model.train()
    totals = EpochTotals()
    gate_sums = torch.zeros(model.num_gates, dtype=torch.float64)
    target_gates = None if weights.target_gates is None else torch.tensor(weights.target_gates, device=context.device,
                                                                           dtype=torch.long)
    wait_seconds = 0.0
    started = time.perf_counter()
    progress = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
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
        # The teacher sees the same augmented images; its softmax is over logit_scale x logits, as the student's.
        teacher_logits = None if teacher is None else (
            teacher.infer(images, precision=config.train.precision).logits * teacher.logit_scale)
        parts = training_loss(logits.float(), identities, gate_values.float(), target_rates,
                              target_weight=weights.target_weight, iig_weight=weights.iig_weight,
                              iig_features=iig_features, iig_balanced=weights.iig_balanced, target_gates=target_gates,
                              margin=weights.margin, margin_m=weights.margin_m, margin_scale=weights.margin_scale,
                              teacher_logits=teacher_logits, distill_weight=weights.distill_weight,
                              distill_temperature=weights.distill_temperature)
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
        totals.distill += parts.distill.item() * count
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
    except ImportError:
        logger.warning("train.tensorboard is on but tensorboard is not installed (pip install 'facegraph[tensorboard]'); "
                       "metrics.jsonl is written as always")
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
