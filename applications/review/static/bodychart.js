// Body chart: marks regions, sends the case to POST /api/v1/decide and shows what the
// decision-support core returns. No area, volume or referral is computed here.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const initial = JSON.parse(($("case-data") || {}).textContent || "{}");
  const burns = new Map();
  let selected = null;
  let pending = null;
  let touched = false; // only a case the clinician changed goes into the review

  const method = () => $("method").value;
  const attr = () => (method() === "lund_browder" ? "data-lb" : "data-ron");
  const visibleShapes = () => document.querySelectorAll('.figure:not(.hidden) .region');
  const allShapes = () => document.querySelectorAll(".region");

  function numberOrNull(id) {
    const v = $(id).value.trim();
    return v === "" ? null : Number(v);
  }

  function buildCase() {
    const c = Object.assign({}, initial);
    c.method = method();
    c.formula = $("formula").value;
    const fields = { age_years: "age", weight_kg: "weight", hours_since_injury: "hours", fluids_given_ml: "fluids-given" };
    for (const [key, id] of Object.entries(fields)) {
      const v = numberOrNull(id);
      if (v === null) delete c[key]; else c[key] = v;
    }
    if ($("mechanism").value) c.mechanism = $("mechanism").value; else delete c.mechanism;
    if ($("inhalation").checked) c.inhalation_injury = true; else if (c.inhalation_injury === true) c.inhalation_injury = false;
    if (burns.size > 0 || Array.isArray(initial.burns)) {
      c.burns = Array.from(burns.entries()).map(([region, b]) => ({ region: region, depth: b.depth, fraction: b.fraction }));
    } else {
      delete c.burns;
    }
    return c;
  }

  function paint() {
    allShapes().forEach((s) => {
      s.classList.remove("selected", "depth-superficial", "depth-superficial_partial_thickness",
        "depth-deep_partial_thickness", "depth-full_thickness");
      const key = s.getAttribute(attr());
      const b = burns.get(key);
      if (b) s.classList.add("depth-" + b.depth);
      if (key === selected) s.classList.add("selected");
    });
    const list = $("marked");
    list.textContent = "";
    for (const [region, b] of burns.entries()) {
      const li = document.createElement("li");
      li.dataset.region = region;
      li.textContent = region.replace(/_/g, " ") + ": " + b.depth.replace(/_/g, " ") + ", fraction " + b.fraction;
      list.appendChild(li);
    }
  }

  function show(id, text, value) {
    const el = $(id);
    el.textContent = text;
    if (value !== undefined) el.dataset.value = value === null ? "" : String(value);
  }

  function fillList(id, items) {
    const ul = $(id);
    ul.textContent = "";
    (items || []).forEach((t) => { const li = document.createElement("li"); li.textContent = t; ul.appendChild(li); });
  }

  function render(r) {
    $("decide-error").classList.add("hidden");
    show("tbsa-value", r.tbsa_percent === null ? "—" : r.tbsa_percent.toFixed(1) + " %", r.tbsa_percent);
    show("chart-name", r.chart ? r.chart.replace(/_/g, " ") : "—");
    const p = r.parkland;
    const formula = r.fluid_formula === "modified_brooke" ? "Modified Brooke" : "Parkland";
    show("fluid-total", p ? formula + ": " + Math.round(p.total_ml_24h).toLocaleString("en") + " mL" : "not computed", p ? p.total_ml_24h : null);
    show("fluid-first8", p ? Math.round(p.first_8h_ml).toLocaleString("en") + " mL" : "—", p ? p.first_8h_ml : null);
    show("fluid-rate", p && p.rate_now_ml_per_h !== null ? Math.round(p.rate_now_ml_per_h).toLocaleString("en") + " mL/h" : "—",
      p ? p.rate_now_ml_per_h : null);
    const u = r.urine_output_target;
    show("urine", u ? u.ml_per_h + " mL/h (" + u.ml_per_kg_per_h + " mL/kg/h)" : "—");
    const ref = r.referral || {};
    show("referral", ref.recommended ? "recommended — " + String(ref.level || "").replace(/_/g, " ") : "no criterion fired",
      ref.recommended ? "recommended" : "none");
    fillList("referral-criteria", ref.criteria);
    fillList("warnings", r.warnings);
    $("missing").textContent = r.missing && r.missing.length ? "Missing: " + r.missing.join(", ") : "";
  }

  function fail(message) {
    const el = $("decide-error");
    el.textContent = message;
    el.classList.remove("hidden");
  }

  async function update(userChange) {
    if (userChange !== false) touched = true;
    const body = JSON.stringify(buildCase());
    const request = fetch("/api/v1/decide", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body,
    });
    pending = request;
    let response;
    try {
      response = await request;
    } catch (e) {
      if (pending === request) fail("The server could not be reached.");
      return;
    }
    if (pending !== request) return; // a newer request is on its way
    const data = await response.json().catch(() => ({}));
    if (response.ok) {
      render(data);
      document.body.dataset.decided = String(Number(document.body.dataset.decided || 0) + 1);
    } else {
      const d = data.detail;
      fail(Array.isArray(d) && d.length ? d[0].msg : (d && d.message) || "Request failed (" + response.status + ")");
    }
  }

  function select(shape) {
    selected = shape.getAttribute(attr());
    const title = shape.querySelector("title");
    $("region-name").textContent = (title ? title.textContent + " → " : "") + selected.replace(/_/g, " ");
    $("region-name").dataset.region = selected;
    const b = burns.get(selected);
    if (b) { $("region-depth").value = b.depth; $("region-fraction").value = b.fraction; }
    $("region-apply").disabled = false;
    $("region-clear").disabled = !b;
    paint();
  }

  function init() {
    if (initial.method === "lund_browder") $("method").value = "lund_browder";
    if (initial.formula === "modified_brooke") $("formula").value = "modified_brooke";
    const fields = { age_years: "age", weight_kg: "weight", hours_since_injury: "hours", fluids_given_ml: "fluids-given" };
    for (const [key, id] of Object.entries(fields)) if (typeof initial[key] === "number") $(id).value = initial[key];
    if (initial.mechanism) $("mechanism").value = initial.mechanism;
    $("inhalation").checked = initial.inhalation_injury === true;
    (Array.isArray(initial.burns) ? initial.burns : []).forEach((b) => {
      if (b && b.region) burns.set(b.region, { depth: b.depth, fraction: Number(b.fraction) });
    });

    allShapes().forEach((s) => {
      s.addEventListener("click", () => select(s));
      s.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(s); } });
    });
    $("region-apply").addEventListener("click", () => {
      if (!selected) return;
      burns.set(selected, { depth: $("region-depth").value, fraction: Number($("region-fraction").value) });
      $("region-clear").disabled = false;
      paint();
      update();
    });
    $("region-clear").addEventListener("click", () => {
      if (!selected) return;
      burns.delete(selected);
      $("region-clear").disabled = true;
      paint();
      update();
    });
    $("figure").addEventListener("change", () => {
      document.querySelectorAll(".figure").forEach((f) => f.classList.toggle("hidden", f.dataset.figure !== $("figure").value));
      paint();
    });
    $("method").addEventListener("change", () => { burns.clear(); selected = null; $("region-name").textContent = "click a region"; paint(); update(); });
    ["age", "weight", "hours", "fluids-given", "formula", "mechanism", "inhalation"].forEach((id) =>
      $(id).addEventListener("change", () => update()));
    const form = $("review-form");
    if (form) form.addEventListener("submit", () => { $("review-case").value = touched ? JSON.stringify(buildCase()) : ""; });
    paint();
    update(false);
  }

  document.addEventListener("DOMContentLoaded", init);
})();
