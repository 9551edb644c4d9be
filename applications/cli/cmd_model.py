"""CLI commands of the model life cycle: ``finetune``, ``export-bundle``, ``export-triton``.

Thin: options are parsed and checked here; the work is done in ``burnscope.lifecycle.training``,
``burnscope.lifecycle.monai_bundle`` and ``burnscope.lifecycle.triton``. Heavy imports happen inside
the commands so that ``burnscope --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

_err = Console(stderr=True)
console = Console()

MODEL_OPT = typer.Option(
    None, "-m", "--model",
    help="Model: BiomedCLIP weights (file or folder), a burnscope model folder, or a MONAI bundle; "
    "else HOLOSCAN_MODEL_PATH, the HF cache, or the demo model.",
)
MODEL_CONFIG_OPT = typer.Option("biomedclip", "--model-config", help="Architecture config name or path (engines/configs).")


def _fail(message: str, code: int = 2) -> None:
    _err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def finetune_command(
    data: Path = typer.Argument(..., help="Labelled folder (one sub-folder per class; or train/ and val/ each with them) or a CSV path,label[,split][,patient]."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Model folder to write (usable as -m OUT_DIR by every command)."),
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    epochs: int = typer.Option(10, "--epochs", min=1),
    unfreeze_blocks: str = typer.Option("2", "--unfreeze-blocks", help="Last K transformer blocks of the image tower to train: 0 (head only) … all."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Training processes (DDP: gloo on CPU, NCCL on GPUs). torchrun works too."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Global batch over all processes."),
    lr_head: float = typer.Option(1e-3, "--lr-head", min=0.0),
    lr_tower: float = typer.Option(1e-5, "--lr-tower", min=0.0),
    patience: int = typer.Option(3, "--patience", min=1, help="Stop after this many epochs without a better validation macro-F1."),
    balance: str = typer.Option("loss", "--balance", help="Class balance: loss (weights) | sampler (balanced draws) | none."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Flip, rotation ≤ 10°, mild colour jitter."),
    amp: str = typer.Option("auto", "--amp", help="Mixed precision on GPUs: auto (bf16, else fp16) | bf16 | fp16 | off."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", min=0.05, max=0.5, help="Share of patients for validation (when no split is given)."),
    min_per_class: int = typer.Option(4, "--min-per-class", min=1, help="Fewest images a class needs."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in OUT_DIR from its last checkpoint."),
    sync_check: str = typer.Option("epoch", "--sync-check", help="Compare parameter hashes across processes every: epoch | step."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bars."),
) -> None:
    """Fine-tune the image tower's last K blocks and a burn-depth head; write a model folder, metrics and a model card."""
    from burnscope.lifecycle.training.finetune import FinetuneRequest, run_finetune
    from burnscope.lifecycle.training.trainer import AMP, BALANCE, TrainSettings

    if balance not in BALANCE:
        _fail(f"--balance must be one of {', '.join(BALANCE)}")
    if amp not in AMP:
        _fail(f"--amp must be one of {', '.join(AMP)}")
    if sync_check not in ("epoch", "step"):
        _fail("--sync-check must be epoch or step")
    settings = TrainSettings(
        out_dir=str(out_dir), model=model, model_config=model_config, epochs=epochs, batch_size=batch_size,
        lr_head=lr_head, lr_tower=lr_tower, patience=patience, balance=balance, augment=augment, amp=amp,
        seed=seed, resume=resume, sync_check=sync_check, progress=not quiet,
    )
    request = FinetuneRequest(str(data), settings, unfreeze=unfreeze_blocks, nproc=nproc,
                              val_fraction=val_fraction, min_per_class=min_per_class)
    try:
        result = run_finetune(request)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if not result:  # a torchrun worker other than rank 0
        return
    summary, metrics, zero_shot = result["summary"], result["metrics"], result["zero_shot"]
    table = Table(title=f"Fine-tuned → {out_dir}")
    for col in ("class", "train", "val", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, counts in summary["counts"].items():
        row = (metrics or {}).get("per_class", {}).get(name, {})
        table.add_row(name, str(counts["train"]), str(counts["val"]),
                      *(f"{row[k]:.3f}" if row.get(k) is not None else "—" for k in ("precision", "recall", "f1")))
    console.print(table)
    if metrics:
        ci = metrics["ci95"]["macro_f1"]
        console.print(
            f"validation: accuracy {metrics['accuracy']:.3f} · macro-F1 {metrics['macro_f1']:.3f}"
            + (f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
            + f" · ECE {metrics['ece']:.3f}"
            + (f" · zero-shot macro-F1 {zero_shot['macro_f1']:.3f}" if zero_shot else ""),
            highlight=False,
        )
    console.print(f"model folder, metrics.json, plots and MODEL_CARD.md in {out_dir}", highlight=False)
    if summary["base"]["demo"]:
        console.print("[bold yellow]DEMO MODEL (random weights) — not for clinical use: fine-tuned from the demo model[/bold yellow]")


def export_bundle_command(
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    out_dir: Path = typer.Option(..., "-o", "--out", help="MONAI bundle folder to write."),
    version: str = typer.Option("0.1.0", "--version", help="Bundle version (metadata.json)."),
) -> None:
    """Write a MONAI Bundle (configs/metadata.json, configs/inference.json, models/, docs/) of a model."""
    from burnscope.lifecycle.monai_bundle import export_bundle

    try:
        path = export_bundle(model, out_dir, model_config=model_config, version=version)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"MONAI bundle in {path}\n  run: python -m monai.bundle run --config_file {path}/configs/inference.json "
                  f"--input_dir IMAGES --output_dir FINDINGS", highlight=False)


def export_triton_command(
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    out_dir: Path = typer.Option(..., "-o", "--out", help="Triton model repository to write."),
    name: str = typer.Option("burnscope_image_tower", "--name", help="Model name in the repository."),
    max_batch_size: int = typer.Option(64, "--max-batch-size", min=1),
    preferred: str = typer.Option("8,32", "--preferred-batch-sizes", help="Comma-separated preferred batch sizes."),
    max_queue_delay_us: int = typer.Option(2000, "--max-queue-delay-us", min=0),
    instances: int = typer.Option(1, "--instances", min=1, help="Model instances per device."),
    kind: str = typer.Option("gpu", "--kind", help="Instance kind: gpu | cpu."),
) -> None:
    """Write a Triton model repository: the image tower as ONNX with config.pbtxt (dynamic batching)."""
    from burnscope.lifecycle.triton import TritonOptions, export_triton

    try:
        sizes = tuple(int(s) for s in preferred.split(",") if s.strip())
        options = TritonOptions(name=name, max_batch_size=max_batch_size, preferred_batch_sizes=sizes,
                                max_queue_delay_us=max_queue_delay_us, instances=instances, kind=kind)
        path = export_triton(model, out_dir, options, model_config=model_config)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"Triton model repository in {out_dir} ({path.relative_to(out_dir)})", highlight=False)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the burnscope CLI."""
    app.command("finetune")(finetune_command)
    app.command("export-bundle")(export_bundle_command)
    app.command("export-triton")(export_triton_command)
