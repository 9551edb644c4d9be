"""Shapes of the SVG body chart: adult and child, front and back.

Each shape names the chart region it belongs to in both charts the decision-support core knows:
``ron`` (Rule of Nines: ``head_neck``, ``left_arm`` …) and ``lb`` (Lund–Browder: ``head``,
``left_upper_arm``, ``left_hand`` …). The page marks a region with a depth and a fraction and
sends the case to ``POST /api/v1/decide``; nothing here or in the page computes an area.

Coordinates are in a 200 × 440 box; in the front view the patient's right side is on the
viewer's left, in the back view on the viewer's right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Proportions that differ between the adult and the child figure (child: larger head, shorter legs).
FIGURES = {
    "adult": {"head_rx": 21, "head_ry": 26, "neck": 12, "trunk": 118, "arm": 58, "forearm": 52, "thigh": 96, "shin": 88},
    "child": {"head_rx": 29, "head_ry": 35, "neck": 9, "trunk": 104, "arm": 50, "forearm": 44, "thigh": 78, "shin": 70},
}
VIEWS = ("front", "back")


@dataclass(frozen=True)
class Shape:
    tag: str  # "ellipse" or "rect"
    attrs: dict[str, Any]
    ron: str
    lb: str
    title: str


def _side(name: str, side: str) -> str:
    return f"{side}_{name}"


def shapes(figure: str, view: str) -> list[Shape]:
    """The shapes of one figure (``adult``/``child``) in one view (``front``/``back``)."""
    p = FIGURES[figure]
    out: list[Shape] = []
    cx = 100
    head_cy = 12 + p["head_ry"]
    out.append(Shape("ellipse", {"cx": cx, "cy": head_cy, "rx": p["head_rx"], "ry": p["head_ry"]}, "head_neck", "head",
                     "Head (face)" if view == "front" else "Head (back)"))
    neck_y = head_cy + p["head_ry"] - 2
    out.append(Shape("rect", {"x": cx - 9, "y": neck_y, "width": 18, "height": p["neck"], "rx": 3}, "head_neck", "neck", "Neck"))
    trunk_y = neck_y + p["neck"]
    trunk = "anterior_trunk" if view == "front" else "posterior_trunk"
    out.append(Shape("rect", {"x": cx - 32, "y": trunk_y, "width": 64, "height": p["trunk"], "rx": 10}, trunk, trunk,
                     "Anterior trunk (chest, abdomen)" if view == "front" else "Posterior trunk (back)"))
    pelvis_y = trunk_y + p["trunk"]
    if view == "front":
        out.append(Shape("rect", {"x": cx - 10, "y": pelvis_y, "width": 20, "height": 16, "rx": 4}, "perineum", "genitalia",
                         "Genitalia / perineum"))
    # The viewer's left holds the patient's right in the front view, the patient's left in the back view.
    sides = (("right", -1), ("left", 1)) if view == "front" else (("left", -1), ("right", 1))
    for side, sign in sides:
        label = side.capitalize()
        arm_x = cx + sign * 44 - 10  # centre of the upper arm minus half its width
        out.append(Shape("rect", {"x": arm_x, "y": trunk_y + 3, "width": 20, "height": p["arm"], "rx": 8},
                         _side("arm", side), _side("upper_arm", side), f"{label} upper arm"))
        fore_x = cx + sign * 50 - 9
        fore_y = trunk_y + 5 + p["arm"]
        out.append(Shape("rect", {"x": fore_x, "y": fore_y, "width": 18, "height": p["forearm"], "rx": 7},
                         _side("arm", side), _side("lower_arm", side), f"{label} forearm"))
        out.append(Shape("ellipse", {"cx": cx + sign * 51, "cy": fore_y + p["forearm"] + 10, "rx": 9, "ry": 11},
                         _side("arm", side), _side("hand", side), f"{label} hand"))
        if view == "back":
            out.append(Shape("rect", {"x": cx + (0 if sign > 0 else -30), "y": pelvis_y - 2, "width": 30, "height": 22, "rx": 8},
                             "posterior_trunk", _side("buttock", side), f"{label} buttock"))
        leg_x = cx + sign * 16 - 13
        thigh_y = pelvis_y + (20 if view == "back" else 16)
        out.append(Shape("rect", {"x": leg_x, "y": thigh_y, "width": 26, "height": p["thigh"], "rx": 10},
                         _side("leg", side), _side("thigh", side), f"{label} thigh"))
        shin_y = thigh_y + p["thigh"] + 2
        out.append(Shape("rect", {"x": leg_x + 2, "y": shin_y, "width": 22, "height": p["shin"], "rx": 9},
                         _side("leg", side), _side("lower_leg", side), f"{label} lower leg"))
        out.append(Shape("ellipse", {"cx": cx + sign * 16 + sign * 4, "cy": shin_y + p["shin"] + 8, "rx": 14, "ry": 8},
                         _side("leg", side), _side("foot", side), f"{label} foot"))
    return out


def chart(figure: str) -> list[dict[str, Any]]:
    """Both views of a figure, for the template: ``[{view, shapes}]``."""
    return [{"view": view, "shapes": shapes(figure, view)} for view in VIEWS]


__all__ = ["FIGURES", "Shape", "VIEWS", "chart", "shapes"]
