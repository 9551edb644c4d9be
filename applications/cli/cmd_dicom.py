"""CLI commands of the DICOM area: ``inspect`` and ``wrap-photo``.

``burnscope inspect PATH... [--json] [--dump DIR] [--show-phi]`` shows, for every image (frame)
the loader would hand to preprocessing, where it came from and whether it was accepted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .options import ensure_output_folder, fail

def _dump_name(index: int, path: Path, base: Path | None, frame: int) -> str:
    try:
        rel = path.relative_to(base) if base is not None else Path(path.name)
    except ValueError:
        rel = Path(path.name)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(rel.parts)).strip("_") or "image"
    return f"{index:05d}-{slug}-frame{frame:04d}.npy"


def inspect_paths(
    paths: list[Path],
    *,
    dump: Path | None = None,
    show_phi: bool = False,
    workers: int | None = None,
    max_pixels: int | None = None,
    select: Path | None = None,
    isolate: bool = True,
    decode_timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """One row per image (frame) or per failed file, as ``burnscope inspect`` prints them.

    Files are decoded in supervised worker processes unless ``isolate`` is False: a codec that
    crashes or hangs on a damaged file makes that file's row an error (``decoder_crashed``,
    ``decode_timeout``) and the rest go on.
    """
    from burnscope.operators.dicom_loader.core import DEFAULT_MAX_PIXELS, DicomLoader
    from burnscope.operators.dicom_loader.isolation import DEFAULT_TIMEOUT_S

    selector = None
    if select is not None:
        from burnscope.operators.dicom_loader.selector import SeriesSelector

        selector = SeriesSelector(select)
    loader = DicomLoader(workers=workers, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, selector=selector,
                         isolate=isolate, decode_timeout_s=decode_timeout_s or DEFAULT_TIMEOUT_S)
    try:
        return _inspect_rows(loader, paths, dump=dump, show_phi=show_phi)
    finally:
        loader.close()


def _inspect_rows(loader: Any, paths: list[Path], *, dump: Path | None, show_phi: bool) -> list[dict[str, Any]]:
    import numpy as np

    rows: list[dict[str, Any]] = []
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
    counter = 0
    for root in paths:
        base = root if root.is_dir() else root.parent
        for result in loader.iter_file_results(loader.scan(root), base):
            if result.skipped:
                rows.append({"path": str(result.path), "sop_instance_uid": "", "sop_class_uid": "",
                             "transfer_syntax_uid": "", "photometric_interpretation": "", "rows": None,
                             "columns": None, "frame": None, "decision": "skipped",
                             "reason": "not selected", "message": "the series selector left it out"})
                continue
            if result.error is not None:
                header = result.header
                row = {
                    "path": str(result.path),
                    "sop_instance_uid": result.error.sop_instance_uid,
                    "sop_class_uid": header.sop_class_uid if header else "",
                    "transfer_syntax_uid": header.transfer_syntax_uid if header else "",
                    "photometric_interpretation": header.photometric_interpretation if header else "",
                    "rows": header.rows if header else None,
                    "columns": header.columns if header else None,
                    "frame": None,
                    "decision": "error",
                    "reason": result.error.reason,
                    "message": result.error.message,
                }
                rows.append(row)
                continue
            for record, info in zip(result.images, result.infos):
                ctx = record.context
                row = {
                    "path": str(result.path),
                    "sop_instance_uid": ctx.sop_instance_uid,
                    "sop_class_uid": info.sop_class_uid,
                    "transfer_syntax_uid": info.transfer_syntax_uid,
                    "photometric_interpretation": info.photometric_interpretation,
                    "rows": info.rows,
                    "columns": info.columns,
                    "frame": info.frame_number,
                    "decision": "accepted",
                    "reason": "",
                    "message": "",
                    "body_site": ctx.body_site,
                    "modality": ctx.modality,
                }
                if show_phi:
                    row["patient"] = ctx.patient.as_dict()
                if dump is not None:
                    counter += 1
                    name = _dump_name(counter, result.path, base, info.frame_number)
                    pixels = record.pixels
                    if not isinstance(pixels, np.ndarray):  # decoded on the GPU
                        pixels = pixels.get()
                    np.save(dump / name, pixels)
                    row["dump"] = str(dump / name)
                rows.append(row)
    if dump is not None:
        index = [
            {k: r[k] for k in ("dump", "path", "frame", "sop_instance_uid")} for r in rows if "dump" in r
        ]
        (dump / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return rows


def _uid_name(uid: str) -> str:
    if not uid:
        return ""
    from pydicom.uid import UID

    keyword = UID(uid).keyword
    return keyword or uid


def inspect_cmd(
    paths: list[Path] = typer.Argument(..., help="DICOM files, folders (recursive) or DICOMDIRs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of a table."),
    dump: Optional[Path] = typer.Option(
        None, "--dump", help="Write each decoded image as .npy (H×W×3 uint8 RGB) plus index.json here."
    ),
    show_phi: bool = typer.Option(False, "--show-phi", help="Also print patient name, ID and birth date."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Decode worker processes (threads with --no-isolate)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Limit on rows × columns × frames."),
    select: Optional[Path] = typer.Option(None, "--select", help="Series-selection rules (JSON file)."),
    isolate: bool = typer.Option(
        True, "--isolate/--no-isolate",
        help="Decode in supervised worker processes (a crashing codec costs one file); --no-isolate: "
        "in-process, trusted input only.",
    ),
    decode_timeout: Optional[float] = typer.Option(
        None, "--decode-timeout", help="Seconds one file may take to decode (default 30)."
    ),
) -> None:
    """Show what the DICOM loader makes of each file: one line per image (frame) or error.

    Exit code 0 when at least one image was accepted, 1 when none was, 2 on a missing path.
    """
    for p in paths:
        if not p.exists():
            fail(f"input path does not exist: {p}")
    try:
        rows = inspect_paths(paths, dump=dump, show_phi=show_phi, workers=workers, max_pixels=max_pixels,
                             select=select, isolate=isolate, decode_timeout_s=decode_timeout)
    except ValueError as exc:  # bad selector rules
        fail(str(exc))
    accepted = sum(r["decision"] == "accepted" for r in rows)
    errors = sum(r["decision"] == "error" for r in rows)
    skipped = len(rows) - accepted - errors
    if as_json:
        typer.echo(json.dumps({"images": accepted, "errors": errors, "skipped": skipped, "items": rows}, indent=2))
    else:
        console = Console()
        if not console.is_terminal:  # piped: do not squeeze UIDs into 80 columns
            console = Console(width=240)
        title = f"{accepted} image(s) accepted, {errors} error(s)" + (f", {skipped} skipped" if skipped else "")
        table = Table(title=title)
        for col in ("path", "SOP Instance UID", "SOP class", "transfer syntax", "photometric", "rows",
                    "cols", "frame", "decision"):
            table.add_column(col, overflow="fold")
        if show_phi:
            table.add_column("patient (PHI)", overflow="fold")
        for r in rows:
            decision = {"accepted": "accepted", "skipped": "skipped (not selected)"}.get(
                r["decision"], f"[red]error: {r['reason']}[/red]"
            )
            cells = [
                r["path"], r["sop_instance_uid"], _uid_name(r["sop_class_uid"]),
                _uid_name(r["transfer_syntax_uid"]), r["photometric_interpretation"],
                "" if r["rows"] is None else str(r["rows"]), "" if r["columns"] is None else str(r["columns"]),
                "" if r["frame"] is None else str(r["frame"]), decision,
            ]
            if show_phi:
                p = r.get("patient") or {}
                cells.append(" / ".join(v for v in (p.get("name"), p.get("patient_id"), p.get("birth_date")) if v))
            table.add_row(*cells)
        console.print(table)
        for r in rows:
            if r["decision"] == "error":
                console.print(f"{r['path']}: {r['reason']} — {r['message']}", highlight=False, soft_wrap=True)
        if dump is not None:
            console.print(f"decoded images written to {dump} (index.json maps them to files and frames)")
    if accepted == 0:
        raise typer.Exit(1)


def wrap_photo_cmd(
    photos: list[Path] = typer.Argument(..., help="JPEG or PNG photographs."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder for the DICOM files."),
    metadata: Optional[Path] = typer.Option(
        None, "--metadata", help="Sidecar JSON with patient/study keys (and an optional 'case' object)."
    ),
    patient_name: Optional[str] = typer.Option(None, "--patient-name", help="DICOM form, e.g. DOE^JANE."),
    patient_id: Optional[str] = typer.Option(None, "--patient-id"),
    birth_date: Optional[str] = typer.Option(None, "--birth-date", help="YYYYMMDD or YYYY-MM-DD."),
    sex: Optional[str] = typer.Option(None, "--sex", help="F, M or O."),
    body_site: Optional[str] = typer.Option(None, "--body-site", help="e.g. forearm, hand, chest, lower_leg."),
    laterality: Optional[str] = typer.Option(None, "--laterality", help="L, R or B."),
    accession: Optional[str] = typer.Option(None, "--accession"),
    study_uid: Optional[str] = typer.Option(None, "--study-uid", help="Add to an existing study."),
) -> None:
    """Wrap JPEG/PNG photographs into VL Photographic Image DICOM (one study, one series).

    CLI options override the sidecar's keys. A 'case' object in the sidecar is written as
    case.json beside the DICOM files, where the DICOM loader finds it.
    """
    from pydicom.uid import generate_uid

    from burnscope.operators.dicom_loader.photo import wrap_photo

    for p in photos:
        if not p.is_file():
            fail(f"photo does not exist: {p}")
    meta: dict[str, Any] = {}
    if metadata is not None:
        try:
            meta = json.loads(metadata.read_text())
        except (OSError, ValueError) as exc:
            fail(f"cannot read metadata {metadata}: {exc}")
        if not isinstance(meta, dict):
            fail(f"metadata {metadata} must hold a JSON object")
    options = {
        "patient_name": patient_name, "patient_id": patient_id, "birth_date": birth_date, "sex": sex,
        "body_site": body_site, "laterality": laterality, "accession_number": accession,
        "study_instance_uid": study_uid,
    }
    meta.update({k: v for k, v in options.items() if v is not None})
    case = meta.pop("case", None)
    meta.setdefault("study_instance_uid", generate_uid())
    meta.setdefault("series_instance_uid", generate_uid())
    ensure_output_folder(out)
    console = Console()
    used: set[str] = set()
    for number, photo in enumerate(photos, start=1):
        # p.jpg and p.png in one call must not overwrite each other
        name = photo.stem if photo.stem not in used else photo.name.replace(".", "_")
        used.add(name)
        target = out / f"{name}.dcm"
        try:
            ds = wrap_photo(photo, target, {**meta, "instance_number": number})
        except (ValueError, OSError) as exc:
            fail(f"{photo.name}: {exc}")
        console.print(f"{photo.name} → {target} ({ds.file_meta.TransferSyntaxUID.name})", highlight=False)
    if case is not None:
        (out / "case.json").write_text(json.dumps(case, indent=2) + "\n")
        console.print(f"case data → {out / 'case.json'}", highlight=False)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the burnscope CLI."""
    app.command("inspect")(inspect_cmd)
    app.command("wrap-photo")(wrap_photo_cmd)
