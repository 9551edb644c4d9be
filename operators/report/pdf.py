"""Human-readable PDF report (reportlab): thumbnail, finding with a probability bar chart,
TBSA / fluids / referral, model and backend, disclaimer, and the demo banner when it applies.

Output is byte-reproducible for the same report dict (reportlab's invariant mode), so the
folder sink can recognise an unchanged report.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image, KeepInFrame, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from xml.sax.saxutils import escape

from burnscope.common.messages import DEMO_BANNER
from burnscope.operators.report import presentation
from burnscope.operators.report.core import NEEDS_REVIEW_TEXT, label_display


def _para(text: Any, style) -> Paragraph:
    return Paragraph(escape("" if text is None else str(text)), style)


def _thumbnail_flowable(thumbnail: Any, max_side_mm: float = 45.0):
    from burnscope.operators.report.secondary_capture import thumbnail_rgb

    arr = thumbnail_rgb(thumbnail)
    if arr is None:
        return None
    from PIL import Image as PILImage

    buf = BytesIO()
    PILImage.fromarray(arr[..., :3]).save(buf, format="PNG")
    buf.seek(0)
    h, w = arr.shape[:2]
    scale = max_side_mm * mm / max(h, w)
    return Image(buf, width=w * scale, height=h * scale)


def _bar_chart(probabilities: dict[str, float | None], order: list[str], highlight: str) -> Drawing:
    keys = [k for k in order if probabilities.get(k) is not None][::-1]  # top class drawn on top
    values = [float(probabilities[k]) * 100.0 for k in keys]
    height = 13 * max(len(keys), 1) + 24
    drawing = Drawing(170 * mm, height)
    chart = HorizontalBarChart()
    chart.x, chart.y = 62 * mm, 15
    chart.width, chart.height = 95 * mm, height - 25
    chart.data = [values or [0.0]]
    chart.valueAxis.valueMin, chart.valueAxis.valueMax, chart.valueAxis.valueStep = 0, 100, 20
    chart.valueAxis.labelTextFormat = "%d%%"
    chart.categoryAxis.categoryNames = [label_display(k) for k in keys] or ["(none)"]
    chart.categoryAxis.labels.fontSize = 8
    chart.categoryAxis.labels.boxAnchor = "e"
    chart.bars[0].fillColor = colors.HexColor("#7f8c8d")
    for i, key in enumerate(keys):
        if key == highlight:
            chart.bars[(0, i)].fillColor = colors.HexColor("#c0392b")
    chart.barLabelFormat = "%.1f%%"
    chart.barLabels.fontSize = 7
    chart.barLabels.boxAnchor = "w"
    chart.barLabels.dx = 3
    drawing.add(chart)
    return drawing


def render_pdf(
    report: dict[str, Any], thumbnail: Any = None, date_format: str = presentation.DEFAULT_DATE_FORMAT
) -> bytes:
    """PDF bytes of one report dict (from :func:`burnscope.operators.report.core.build_report`), on
    one A4 page, worded as :mod:`~burnscope.operators.report.presentation` words it."""
    styles = getSampleStyleSheet()
    body = styles["BodyText"]
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10)
    banner_style = ParagraphStyle(
        "banner",
        parent=body,
        fontSize=13,
        leading=16,
        textColor=colors.white,
        alignment=1,
        fontName="Helvetica-Bold",
    )
    buf = BytesIO()
    src, fnd, mdl = report["source"], report["finding"], report["model"]
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=12 * mm,
        bottomMargin=16 * mm,
        title="Burn image triage report",
        author="burnscope",
        subject=src["sop_instance_uid"] or src["file"],
        creator="burnscope",
        invariant=1,
    )
    story: list[Any] = []
    if report.get("demo_model"):
        banner = Table([[Paragraph(escape(DEMO_BANNER), banner_style)]], colWidths=[174 * mm])
        banner.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#c0392b")),
                    ("TOPPADDING", (0, 0), (-1, -1), 6),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                ]
            )
        )
        story += [banner, Spacer(1, 4 * mm)]
    story.append(
        Paragraph("Burn image triage report <font size=9>(preliminary: not verified by a clinician)</font>",
                  styles["Title"])
    )
    stat = presentation.priority_text(report)
    if stat:
        stat_style = ParagraphStyle("stat", parent=banner_style, fontSize=12, leading=15)
        line = Table([[Paragraph(escape(stat), stat_style)]], colWidths=[174 * mm])
        line.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#d35400")),
                                  ("TOPPADDING", (0, 0), (-1, -1), 3), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))
        story += [line, Spacer(1, 2 * mm)]
    story.append(
        _para(f"Generated {presentation.display_timestamp(report['generated_at'])} by burnscope "
              f"{report['generator']['version']}", small)
    )
    story.append(Spacer(1, 2 * mm))

    (_, name), (_, patient_id), (_, birth), (_, sex) = presentation.patient_rows(report, date_format)
    na = presentation.NOT_AVAILABLE
    grid = [
        ["Patient", name, "Patient ID", patient_id],
        ["Birth date", birth, "Sex", sex],
        ["Study date", presentation.display_date(src["study_date"], date_format), "Accession",
         src["accession_number"] or na],
        ["Body site", src["body_site"] or na, "Frame", str(src["frame"])],
        ["Source", src["file"] or na, "", ""],
        ["SOP Instance UID", src["sop_instance_uid"] or na, "", ""],
    ]
    table = Table(
        [[_para(c, small) for c in row] for row in grid], colWidths=[28 * mm, 62 * mm, 24 * mm, 60 * mm]
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("SPAN", (1, 4), (3, 4)),
                ("SPAN", (1, 5), (3, 5)),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#ecf0f1")),
                ("BACKGROUND", (2, 0), (2, 3), colors.HexColor("#ecf0f1")),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    story += [table, Spacer(1, 2 * mm)]

    finding_text = f"UNDETERMINED - {NEEDS_REVIEW_TEXT.upper()}" if fnd["abstained"] else fnd["label_display"]
    conf = fnd["confidence"]
    left = [
        Paragraph("Finding", styles["Heading3"]),
        _para(f"Burn depth: {finding_text}", body),
        _para(f"Confidence: {conf * 100:.1f}%" if conf is not None else "Confidence: not available", body),
        _para(f"Head: {fnd['head']}", small),
    ]
    thumb = _thumbnail_flowable(thumbnail)
    if thumb is not None:
        top = Table([[left, thumb]], colWidths=[110 * mm, 64 * mm])
        top.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        story.append(top)
    else:
        story += left + [_para("(no image thumbnail available)", small)]
    story.append(Paragraph("Class probabilities", styles["Heading4"]))
    story.append(_bar_chart(fnd["probabilities"], fnd["ranked"], fnd["label"]))

    story.append(Paragraph("Decision support (estimates for a clinician to confirm)", styles["Heading3"]))
    rows = presentation.decision_rows(report)
    dst = Table([[_para(a, small), _para(b, small)] for a, b in rows], colWidths=[55 * mm, 119 * mm])
    dst.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    story.append(dst)

    story.append(Paragraph("Model", styles["Heading3"]))
    story.append(
        _para(
            f"{mdl['name']} - weights: {mdl['weights']} - backend: {mdl['backend'] or 'not stated'} "
            f"({mdl['precision']}, {mdl['device']})" + (" - DEMO (random weights)" if mdl["demo"] else ""),
            small,
        )
    )
    story.append(Spacer(1, 2 * mm))
    story.append(_para("Disclaimer: " + report["disclaimer"], small))
    demo = bool(report.get("demo_model"))

    def footer(canvas, document) -> None:
        # The page names the image and, for demo weights, repeats the banner.
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(18 * mm, 8 * mm, f"{src['sop_instance_uid'] or src['file']}")
        if demo:
            canvas.setFillColor(colors.HexColor("#c0392b"))
            canvas.setFont("Helvetica-Bold", 8)
            canvas.drawRightString(A4[0] - 18 * mm, 8 * mm, DEMO_BANNER)
        canvas.restoreState()

    # One page always: a report with many warnings shrinks to fit rather than spilling over.
    page = KeepInFrame(doc.width, doc.height, content=story, mode="shrink", hAlign="CENTER", vAlign="TOP")
    doc.build([page], onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
