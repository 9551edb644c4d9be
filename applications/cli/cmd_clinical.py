"""CLI commands of the clinical area: ``decide``, ``train-head``, ``evaluate``.

Heavy imports (torch, open_clip, scikit-learn) happen inside the commands so that
``burnscope --help`` and ``burnscope decide`` stay fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .options import MODEL_CONFIG_OPT, MODEL_OPT, err_console, fail


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _print_decision(result: dict[str, Any], console: Console) -> None:
    table = Table(title="Burn decision support (for trained clinicians; not a diagnosis)", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("Method / chart", f"{result['method']} / {_fmt(result['chart'])}")
    table.add_row("TBSA (partial + full thickness)", f"{_fmt(result['tbsa_percent'])} %")
    for depth, pct in (result.get("tbsa_by_depth") or {}).items():
        table.add_row(f"  {depth.replace('_', ' ')}", f"{pct:.1f} %")
    table.add_row("Patient group", {True: "child", False: "adult", None: "—"}[result["paediatric"]])
    plan = result.get("parkland")
    formula = "Parkland" if result["fluid_formula"] == "parkland" else "Modified Brooke"
    if plan:
        table.add_row(f"{formula}: total first 24 h", f"{_fmt(plan['total_ml_24h'])} mL")
        table.add_row("  first 8 h from injury", f"{_fmt(plan['first_8h_ml'])} mL")
        table.add_row("  next 16 h", f"{_fmt(plan['next_16h_ml'])} mL")
        table.add_row("  still due in first-8-h window", f"{_fmt(plan['remaining_first_window_ml'])} mL")
        table.add_row("  rate now", f"{_fmt(plan['rate_now_ml_per_h'])} mL/h")
    else:
        table.add_row(formula, "not computed (see warnings / missing)")
    urine = result.get("urine_output_target")
    if urine:
        table.add_row(
            "Urine output target", f"{_fmt(urine['ml_per_h'])} mL/h ({urine['ml_per_kg_per_h']:g} mL/kg/h)"
        )
    ref = result["referral"]
    table.add_row(
        "Burn-centre referral (ABA)",
        ("[bold red]recommended[/bold red]" if ref["recommended"] else "no criterion fired")
        + (f" — {ref['level'].replace('_', ' ')}" if ref["recommended"] else ""),
    )
    for text in ref["criteria"]:
        table.add_row("", f"• {text}")
    console.print(table)
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if result["missing"]:
        console.print(f"[cyan]missing inputs:[/cyan] {', '.join(result['missing'])}", highlight=False)


def decide_command(
    case_file: Path = typer.Argument(
        ...,
        help="Case JSON (keys: age_years, weight_kg, hours_since_injury, mechanism, inhalation_injury, method, burns, ...).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
) -> None:
    """TBSA, Parkland fluids and ABA burn-centre referral for one case."""
    from burnscope.operators.decision_support.core import CaseError, decide

    if not case_file.is_file():
        fail(f"case file not found: {case_file}")
    try:
        case = json.loads(case_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{case_file}: not valid JSON ({exc})")
    try:
        result = decide(case)
    except CaseError as exc:
        fail(f"{case_file}: {exc}")
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_decision(result, Console())


# ------------------------------------------------------------------------------ burn head

def _check_folder(data: Path) -> None:
    """Fail fast on a bad labelled folder, before the model is loaded."""
    from burnscope.operators.burn_severity.core import HeadError
    from burnscope.operators.burn_severity.dataset import scan_labelled_folder

    try:
        scan_labelled_folder(data)
    except HeadError as exc:
        fail(str(exc))


def _load_bundle(model: Optional[str], model_config: str):
    from burnscope.engines.model import load_biomedclip

    try:
        bundle = load_biomedclip(model=model, config=model_config)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if bundle.demo:
        err_console.print(f"[bold yellow]{bundle.info.banner}[/bold yellow]")
    return bundle


def _embed(bundle, data: Path, batch_size: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from burnscope.operators.burn_severity.core import HeadError
    from burnscope.operators.burn_severity.dataset import embed_labelled_folder

    with Progress(
        TextColumn("encoding images"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("encode", total=None)
        try:
            result = embed_labelled_folder(
                bundle,
                data,
                batch_size=batch_size,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except HeadError as exc:
            fail(str(exc))
    for name, reason in result.errors:
        err_console.print(f"[yellow]skipped[/yellow] {name}: {reason}", highlight=False)
    err_console.print(
        f"{len(result.labels)} images ({result.encoded} encoded, {len(result.labels) - result.encoded} from cache)"
    )
    return result


def train_head_command(
    data: Path = typer.Argument(
        ...,
        help="Labelled folder: one sub-folder per class (superficial, superficial_partial_thickness, deep_partial_thickness, full_thickness, not_burn).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Head file to write (JSON)."),
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    folds: int = typer.Option(5, "--folds", min=2, help="Stratified cross-validation folds."),
    c: float = typer.Option(
        1.0, "--C", min=1e-6, help="Inverse L2 regularisation strength of the logistic regression."
    ),
    abstain_threshold: float = typer.Option(
        0.5, "--abstain-threshold", min=0.0, max=1.0, help="Below this confidence the head says needs_review."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per encoder batch."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train a linear probe (logistic regression) on image embeddings of a labelled folder."""
    from burnscope.operators.burn_severity.core import HeadError, train_linear_probe

    _check_folder(data)
    bundle = _load_bundle(model, model_config)
    result = _embed(bundle, data, batch_size)
    try:
        head, report = train_linear_probe(
            result.embeddings,
            result.labels,
            folds=folds,
            C=c,
            seed=seed,
            abstain_threshold=abstain_threshold,
            model_fingerprint=bundle.fingerprint,
        )
    except HeadError as exc:
        fail(str(exc))
    head.metadata["model"] = {"name": bundle.info.name, "weights": bundle.info.weights, "demo": bundle.demo}
    head.save(out)
    table = Table(title=f"Linear probe → {out}")
    table.add_column("class")
    table.add_column("images", justify="right")
    for name, count in zip(report["classes"], report["counts"]):
        table.add_row(name, str(count))
    console = Console()
    console.print(table)
    if report.get("cv_folds"):
        console.print(
            f"{report['cv_folds']}-fold stratified CV: accuracy {report['cv_accuracy']:.3f}, macro-F1 "
            f"{report['cv_macro_f1']:.3f}; temperature {report['temperature']:.3g} "
            f"(NLL {report['cv_nll_uncalibrated']:.3f} → {report['cv_nll_calibrated']:.3f})"
        )
    if bundle.demo:
        console.print(f"[bold yellow]{bundle.info.banner}[/bold yellow]")


def evaluate_command(
    data: Path = typer.Argument(..., help="Labelled folder (one sub-folder per class)."),
    head_file: Optional[Path] = typer.Option(
        None, "--head", help="Head file (train-head / calibrate); default: zero-shot prompt ensemble."
    ),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the metrics as JSON."),
    plots: Optional[Path] = typer.Option(
        None, "--plots", help="Folder for confusion_matrix.png and reliability_diagram.png."
    ),
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompt YAML for the zero-shot head."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
) -> None:
    """Accuracy, macro-F1, sensitivity/specificity, confusion matrix and ECE of a head on labelled images."""
    from burnscope.operators.burn_severity.core import HeadError, load_head
    from burnscope.operators.burn_severity.evaluation import evaluate_head, save_plots

    if head_file is not None and not head_file.is_file():
        fail(f"head file not found: {head_file}")
    _check_folder(data)
    bundle = _load_bundle(model, model_config)
    try:
        head = load_head(bundle, head_file, prompts=prompts)
        result = _embed(bundle, data, batch_size)
        metrics = evaluate_head(head, result.embeddings, result.labels)
    except HeadError as exc:
        fail(str(exc))
    metrics["model"] = {"name": bundle.info.name, "weights": bundle.info.weights, "demo": bundle.demo}
    if bundle.demo:
        metrics["banner"] = bundle.info.banner
    console = Console()
    table = Table(title=f"{metrics['head']} on {data} ({metrics['n_images']} images)")
    table.add_column("class")
    table.add_column("n", justify="right")
    table.add_column("sensitivity", justify="right")
    table.add_column("specificity", justify="right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, str(row["support"]), _fmt3(row["sensitivity"]), _fmt3(row["specificity"]))
    console.print(table)
    console.print(
        f"accuracy {metrics['accuracy']:.3f} · macro-F1 {metrics['macro_f1']:.3f} · ECE {metrics['ece']:.3f} · "
        f"abstained {metrics['abstention_rate']:.1%} (threshold {metrics['abstain_threshold']:g})"
    )
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    if plots is not None:
        for path in save_plots(metrics, plots):
            console.print(f"wrote {path}")
    if bundle.demo:
        console.print(f"[bold yellow]{bundle.info.banner}[/bold yellow]")


def calibrate_command(
    data: Path = typer.Argument(..., help="Labelled folder (one sub-folder per class), not the test set."),
    out: Path = typer.Option(..., "--out", "-o", help="Head file to write, with the fitted temperature."),
    head_file: Optional[Path] = typer.Option(
        None, "--head", help="Head to calibrate; default: zero-shot prompt ensemble."
    ),
    model: Optional[str] = MODEL_OPT,
    model_config: str = MODEL_CONFIG_OPT,
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompt YAML for the zero-shot head."),
    abstain_threshold: Optional[float] = typer.Option(None, "--abstain-threshold", min=0.0, max=1.0),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
) -> None:
    """Fit the temperature of a head (zero-shot or probe) on labelled images and save the head."""
    from burnscope.operators.burn_severity.core import HeadError, load_head

    _check_folder(data)
    bundle = _load_bundle(model, model_config)
    try:
        head = load_head(bundle, head_file, prompts=prompts, abstain_threshold=abstain_threshold)
        result = _embed(bundle, data, batch_size)
        temperature, before, after = head.calibrate(result.embeddings, result.labels)
    except HeadError as exc:
        fail(str(exc))
    head.save(out)
    Console().print(f"temperature {temperature:.4g} (NLL {before:.3f} → {after:.3f}) → {out}")


def _fmt3(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.3f}"


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the burnscope CLI."""
    app.command("decide")(decide_command)
    app.command("train-head")(train_head_command)
    app.command("evaluate")(evaluate_command)
    app.command("calibrate")(calibrate_command)
