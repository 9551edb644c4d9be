"""The review app's REST API and pages through FastAPI's TestClient, on reports made by the real
burn-triage graph, with the real pipeline cores behind /api/v1/analyze."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from fixtures.dicom_helpers import SAMPLE
from fixtures.review_helpers import CLINICIAN, PASSWORD, VIEWER, hidden_csrf, make_users, tiny_web_settings, triage_reports
from typer.testing import CliRunner

from burnscope.common.messages import DEMO_BANNER

MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())
SAMPLE_DICOM = SAMPLE / "study-001" / "IMG-0001.dcm"
TRUNCATED = SAMPLE / "study-002" / "IMG-0003-truncated.dcm"


def _uid(path_end: str) -> str:
    return next(f for f in MANIFEST["files"] if f["path"].endswith(path_end))["sop_instance_uid"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from fastapi.testclient import TestClient

    from burnscope.applications.burn_triage.app import build_components
    from burnscope.applications.burn_triage.settings import load_settings
    from burnscope.applications.review.server import create_app
    from burnscope.applications.review.service import ReviewService

    tmp = tmp_path_factory.mktemp("review-api")
    settings = tiny_web_settings(max_upload_mb=2)
    components = build_components(settings)
    out = triage_reports(load_settings(overrides={"inference": {"model_config": "biomedclip-tiny"}}), components, tmp / "out")
    users, tokens, clinician_token, viewer_token = make_users(tmp)
    service = ReviewService(settings, out, components=components)
    client = TestClient(create_app(service, users, tokens))
    yield {
        "client": client, "out": out, "service": service, "settings": settings, "components": components,
        "users": users, "tokens": tokens,
        "clinician": {"Authorization": f"Bearer {clinician_token}"}, "viewer": {"Authorization": f"Bearer {viewer_token}"},
    }
    service.close()


def _photo_bytes(fmt: str = "JPEG") -> bytes:
    from PIL import Image

    yy, xx = np.mgrid[0:240, 0:320]
    rgb = np.stack([200 + xx % 40, 150 + yy % 50, 130 + (xx + yy) % 30], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def _login(client, username: str) -> str:
    """Signs in through the form; returns the session's CSRF token."""
    client.cookies.clear()
    form = client.get("/login")
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": hidden_csrf(form.text), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get("/", headers={"accept": "text/html"})
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


# ----------------------------------------------------------------------------- authentication


def test_everything_needs_authentication(env):
    client = env["client"]
    client.cookies.clear()
    uid = _uid("study-001/IMG-0001.dcm")
    for path in ("/", f"/images/{uid}", f"/images/{uid}/photo.png", "/api/v1/studies", f"/api/v1/reports/{uid}",
                 "/docs", "/openapi.json", "/static/docs/swagger-ui-bundle.js"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "not authenticated"}
        assert response.headers["www-authenticate"] == "Bearer"
    for path, kwargs in (("/api/v1/decide", {"json": {}}), (f"/api/v1/reports/{uid}/review", {"json": {"outcome": "accepted"}}),
                         ("/api/v1/analyze", {"files": {"file": ("x.dcm", SAMPLE_DICOM.read_bytes())}})):
        response = client.post(path, **kwargs)
        assert response.status_code == 401, path
        assert "Traceback" not in response.text
    # a browser gets the login form, still with 401
    page = client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 401 and 'id="login-form"' in page.text
    # a wrong token and a wrong password are refused alike
    assert client.get("/api/v1/studies", headers={"Authorization": "Bearer " + "x" * 40}).status_code == 401
    form = client.get("/login")
    bad = client.post("/login", data={"username": CLINICIAN[0], "password": "wrong password!", "csrf_token": hidden_csrf(form.text)})
    assert bad.status_code == 401 and "burnscope_session" not in bad.cookies


def test_session_cookie_is_httponly_and_samesite(env):
    client = env["client"]
    client.cookies.clear()
    form = client.get("/login")
    response = client.post("/login", data={"username": VIEWER[0], "password": PASSWORD, "csrf_token": hidden_csrf(form.text)},
                           follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "burnscope_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; Secure behind TLS (see below)
    assert response.headers["content-security-policy"].startswith("default-src 'self'")


def test_secure_cookies_behind_tls(env):
    from fastapi.testclient import TestClient

    from burnscope.applications.review.server import create_app

    client = TestClient(create_app(env["service"], env["users"], env["tokens"], secure_cookies=True), base_url="https://testserver")
    form = client.get("/login")
    response = client.post("/login", data={"username": VIEWER[0], "password": PASSWORD, "csrf_token": hidden_csrf(form.text)},
                           follow_redirects=False)
    assert "Secure" in response.headers["set-cookie"]


def test_login_form_needs_its_csrf_token_and_failed_logins_are_throttled(env):
    client = env["client"]
    client.cookies.clear()
    client.get("/login")
    assert client.post("/login", data={"username": VIEWER[0], "password": PASSWORD, "csrf_token": "forged"}).status_code == 403
    codes = []
    for _ in range(6):
        form = client.get("/login")
        codes.append(client.post("/login", data={"username": "nobody", "password": "wrong password!",
                                                 "csrf_token": hidden_csrf(form.text)}).status_code)
    assert codes[:5] == [401] * 5 and codes[5] == 429


def test_cookie_writes_need_the_csrf_token_and_the_same_origin(env):
    client = env["client"]
    token = _login(client, VIEWER[0])
    case = {"weight_kg": 70, "burns": [{"region": "anterior_trunk", "depth": "full_thickness", "fraction": 1}]}
    assert client.post("/api/v1/decide", json=case).status_code == 403
    assert client.post("/api/v1/decide", json=case, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post("/api/v1/decide", json=case, headers={"X-CSRF-Token": token, "Origin": "https://evil.example"}).status_code == 403
    assert client.post("/api/v1/decide", json=case, headers={"X-CSRF-Token": token}).status_code == 200


def test_removed_user_loses_the_session(env, tmp_path):
    from fastapi.testclient import TestClient

    from burnscope.applications.review.auth import UserStore
    from burnscope.applications.review.server import create_app

    users = UserStore(tmp_path / "users.json")
    users.add("temp", PASSWORD, "viewer")
    client = TestClient(create_app(env["service"], users, env["tokens"]))
    _login(client, "temp")
    assert client.get("/api/v1/studies").status_code == 200
    users.remove("temp")
    assert client.get("/api/v1/studies").status_code == 401


# ----------------------------------------------------------------------------- reading


def test_studies_list_every_image_with_demo_flag(env):
    body = env["client"].get("/api/v1/studies", headers=env["viewer"]).json()
    assert body["demo"] is True and body["banner"] == DEMO_BANNER
    images = [i for s in body["studies"] for i in s["images"] if not i["report"].startswith("uploads/")]
    assert len(images) >= MANIFEST["expected_images"]
    assert {i["review_status"] for i in images} <= {"preliminary", "verified", "rejected"}
    one = env["client"].get(f"/api/v1/reports/{_uid('study-001/IMG-0001.dcm')}", headers=env["viewer"]).json()
    assert one["report"]["schema"] == "burnscope.report" and one["priority"] == "ROUTINE"


def test_pages_link_by_uid_only_and_show_the_image(env):
    client = env["client"]
    _login(client, VIEWER[0])
    worklist = client.get("/", headers={"accept": "text/html"}).text
    links = re.findall(r'href="(/images/[^"]+)"', worklist)
    assert links and all(re.fullmatch(r"/images/[0-9.]+\?frame=\d+", link) for link in links)
    uid = _uid("study-001/IMG-0001.dcm")
    page = client.get(f"/images/{uid}", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert 'id="body-chart"' in page.text and 'id="viewer-note"' in page.text  # a viewer cannot verify
    assert 'id="review-form"' not in page.text
    png = client.get(f"/images/{uid}/photo.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/analyze", "/api/v1/studies", "/api/v1/reports/{sop_instance_uid}",
            "/api/v1/reports/{sop_instance_uid}/review", "/api/v1/decide"} <= set(spec["paths"])


def test_uid_in_path_is_checked(env):
    client = env["client"]
    assert client.get("/api/v1/reports/..%2F..%2Fetc%2Fpasswd", headers=env["viewer"]).status_code in (404, 422)
    assert client.get("/api/v1/reports/1.2.3.4", headers=env["viewer"]).status_code == 404
    assert client.get("/api/v1/reports/not-a-uid", headers=env["viewer"]).status_code == 422


# ----------------------------------------------------------------------------- decide


def test_decide_gives_what_the_cli_gives(env, tmp_path):
    from burnscope.applications.cli import app as cli_app

    case = {"age_years": 30, "weight_kg": 80, "hours_since_injury": 3, "fluids_given_ml": 500, "method": "rule_of_nines",
            "burns": [{"region": "anterior_trunk", "depth": "deep_partial_thickness", "fraction": 1},
                      {"region": "left_leg", "depth": "full_thickness", "fraction": 0.5}]}
    api = env["client"].post("/api/v1/decide", json=case, headers=env["viewer"])
    assert api.status_code == 200
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    cli = CliRunner().invoke(cli_app, ["decide", str(path), "--json"])
    assert cli.exit_code == 0, cli.output
    assert api.json() == json.loads(cli.output)
    assert api.json()["tbsa_percent"] == 27.0 and api.json()["parkland"]["total_ml_24h"] == 8640.0


@pytest.mark.parametrize(
    "case, field",
    [
        ({"weight_kg": -5}, ["body", "weight_kg"]),
        ({"burns": [{"region": "anterior_trunk", "depth": "full_thickness", "fraction": 1.5}]}, ["body", "burns", 0, "fraction"]),
        ({"burns": [{"region": "tail", "depth": "full_thickness", "fraction": 0.5}]}, ["body", "burns", 0, "region"]),
        ({"mechanism": "magic"}, ["body", "mechanism"]),
    ],
)
def test_impossible_case_values_get_422_naming_the_field(env, case, field):
    response = env["client"].post("/api/v1/decide", json=case, headers=env["viewer"])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == field


# ----------------------------------------------------------------------------- analyze


def test_analyze_a_sample_dicom(env):
    response = env["client"].post(
        "/api/v1/analyze", headers=env["clinician"],
        files={"file": ("anything.dcm", SAMPLE_DICOM.read_bytes(), "application/dicom")},
        data={"case": json.dumps({"weight_kg": 70, "age_years": 40, "hours_since_injury": 1,
                                  "burns": [{"region": "anterior_trunk", "depth": "deep_partial_thickness", "fraction": 1},
                                            {"region": "posterior_trunk", "depth": "full_thickness", "fraction": 1}]})},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["demo"] is True and report["banner"] == DEMO_BANNER
    assert report["source"]["sop_instance_uid"] == _uid("study-001/IMG-0001.dcm")
    assert sum(report["finding"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert report["model"]["backend"] == "onnxruntime"
    assert report["decision_support"]["tbsa_percent"] == 36.0
    assert report["decision_support"]["parkland"]["total_ml_24h"] == 4 * 70 * 36.0
    # the same cores as the graph: the same probabilities as the graph's report of this file
    graph = json.loads((env["out"] / "study-001" / "IMG-0001.json").read_text())
    for key, p in graph["finding"]["probabilities"].items():
        assert report["finding"]["probabilities"][key] == pytest.approx(p, abs=1e-5)
    # written into OUT (never under the client's file name), SR and burned-in SC included
    stem = env["out"] / (report["source"]["file"].split("/out/", 1)[1][: -len(".dcm")])
    assert stem.parent == env["out"] / "uploads" and "anything" not in stem.name
    for suffix in (".json", ".sr.dcm", ".sc.dcm", ".fhir.json"):
        assert stem.with_name(stem.name + suffix).is_file(), suffix


def test_analyze_a_photo_wraps_it_as_vl_photographic(env):
    response = env["client"].post(
        "/api/v1/analyze", headers=env["viewer"],
        files={"file": ("phone.jpg", _photo_bytes("JPEG"), "image/jpeg")},
        data={"metadata": json.dumps({"body_site": "forearm", "patient_id": "P-77"}), "case": json.dumps({"priority": "stat"})},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["source"]["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.77.1.4"
    assert report["source"]["body_site"].lower() == "forearm"
    wrapped = pydicom.dcmread(report["source"]["file"])
    assert wrapped.Modality == "XC" and wrapped.PatientID == "P-77"
    png = env["client"].post("/api/v1/analyze", headers=env["viewer"], files={"file": ("x.png", _photo_bytes("PNG"), "image/png")})
    assert png.status_code == 200
    # a STAT case puts its study first in the worklist
    studies = env["client"].get("/api/v1/studies", headers=env["viewer"]).json()["studies"]
    assert studies[0]["priority"] == "STAT"
    assert studies[0]["study_instance_uid"] == report["source"]["study_instance_uid"]


def test_bad_uploads_are_rejected_cleanly(env):
    client, headers = env["client"], env["viewer"]
    corrupt = client.post("/api/v1/analyze", headers=headers, files={"file": ("t.dcm", TRUNCATED.read_bytes())})
    assert corrupt.status_code == 422
    assert corrupt.json()["reason"] == "truncated" and corrupt.json()["field"] == "file"
    wrong = client.post("/api/v1/analyze", headers=headers, files={"file": ("notes.txt", b"not an image at all" * 20)})
    assert wrong.status_code == 415 and wrong.json()["reason"] == "unsupported_type"
    broken_jpeg = client.post("/api/v1/analyze", headers=headers, files={"file": ("b.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 200)})
    assert broken_jpeg.status_code == 422
    big = client.post("/api/v1/analyze", headers=headers, files={"file": ("big.dcm", b"\0" * (3 * 1024 * 1024))})
    assert big.status_code == 413  # max_upload_mb: 2 in this app
    bad_case = client.post("/api/v1/analyze", headers=headers, files={"file": ("x.dcm", SAMPLE_DICOM.read_bytes())},
                           data={"case": json.dumps({"weight_kg": -1})})
    assert bad_case.status_code == 422 and bad_case.json()["detail"][0]["loc"] == ["body", "weight_kg"]
    not_json = client.post("/api/v1/analyze", headers=headers, files={"file": ("x.dcm", SAMPLE_DICOM.read_bytes())},
                           data={"case": "{nope"})
    assert not_json.status_code == 422 and not_json.json()["field"] == "case"
    bad_site = client.post("/api/v1/analyze", headers=headers, files={"file": ("p.jpg", _photo_bytes())},
                           data={"metadata": json.dumps({"body_site": "tail"})})
    assert bad_site.status_code == 422 and bad_site.json()["field"] == "metadata"
    for response in (corrupt, wrong, broken_jpeg, big, bad_case, not_json, bad_site):
        assert "Traceback" not in response.text
    # nothing of the refused uploads stays behind
    assert not [p for p in (env["out"] / "uploads").rglob("*") if p.name.startswith(".photo-")]


def test_other_requests_have_a_small_body_limit(env):
    response = env["client"].post("/api/v1/decide", headers=env["viewer"], content=b"{" + b" " * (600 * 1024) + b"}",
                                  )
    assert response.status_code == 413


# ----------------------------------------------------------------------------- review


def test_a_viewer_may_not_verify(env):
    uid = _uid("study-001/IMG-0002.dcm")
    response = env["client"].post(f"/api/v1/reports/{uid}/review", json={"outcome": "rejected"}, headers=env["viewer"])
    assert response.status_code == 403
    assert env["client"].get(f"/api/v1/reports/{uid}", headers=env["viewer"]).json()["review_status"] == "preliminary"


def test_clinician_review_writes_verified_sr_fhir_sc_and_feedback(env):
    client, out = env["client"], env["out"]
    uid = _uid("study-001/IMG-0003.dcm")
    case = {"weight_kg": 68, "age_years": 46, "hours_since_injury": 2.5,
            "burns": [{"region": "anterior_trunk", "depth": "full_thickness", "fraction": 1}]}
    response = client.post(f"/api/v1/reports/{uid}/review", headers=env["clinician"],
                           json={"outcome": "modified", "finding": "full_thickness", "case": case, "comment": "eschar"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["review"]["outcome"] == "modified" and body["review"]["verifier_display"] == "John Doe"
    assert body["decision_support"]["tbsa_percent"] == 18.0
    assert sorted(body["files"]) == [f"study-001/IMG-0003_review{s}" for s in (".fhir.json", ".json", ".sc.dcm", ".sr.dcm")]

    preliminary = pydicom.dcmread(out / "study-001" / "IMG-0003.sr.dcm")
    sr = pydicom.dcmread(out / "study-001" / "IMG-0003_review.sr.dcm")
    assert (sr.VerificationFlag, sr.CompletionFlag, sr.PreliminaryFlag) == ("VERIFIED", "COMPLETE", "FINAL")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Doe^John"
    predecessor = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == preliminary.SOPInstanceUID
    assert sr.StudyInstanceUID == preliminary.StudyInstanceUID and sr.SOPInstanceUID != preliminary.SOPInstanceUID

    fhir = json.loads((out / "study-001" / "IMG-0003_review.fhir.json").read_text())
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(fhir)
    report_entry = next(e for e in fhir["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report_entry["resource"]["status"] == "amended"
    assert report_entry["request"]["method"] == "PUT"  # updates the preliminary DiagnosticReport
    prelim_fhir = json.loads((out / "study-001" / "IMG-0003.fhir.json").read_text())
    prelim_report = next(e for e in prelim_fhir["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report_entry["resource"]["identifier"] == prelim_report["resource"]["identifier"]
    assert report_entry["resource"]["resultsInterpreter"][0]["display"] == "John Doe"

    sc = pydicom.dcmread(out / "study-001" / "IMG-0003_review.sc.dcm")
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.BurnedInAnnotation == "YES"

    feedback = [json.loads(line) for line in (out / "feedback.jsonl").read_text().splitlines()]
    mine = next(f for f in feedback if f["verified_sr_uid"] == sr.SOPInstanceUID)
    assert mine["outcome"] == "modified" and mine["clinician_label"] == "full_thickness"
    assert mine["ai_label"] == json.loads((out / "study-001" / "IMG-0003.json").read_text())["finding"]["label"]
    text = json.dumps(feedback)
    for patient in MANIFEST["patients"]:
        assert patient["name"] not in text and patient["patient_id"] not in text

    status = client.get(f"/api/v1/reports/{uid}", headers=env["viewer"]).json()
    assert status["review_status"] == "verified" and status["reviews"][-1]["outcome"] == "modified"

    if shutil.which("dciodvfy"):
        for suffix in (".sr.dcm", ".sc.dcm"):
            done = subprocess.run(["dciodvfy", str(out / "study-001" / f"IMG-0003_review{suffix}")],
                                  capture_output=True, text=True, timeout=60)
            assert not [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")], done.stderr


def test_rejecting_and_accepting(env):
    client = env["client"]
    uid = _uid("study-002/IMG-0001.dcm")
    rejected = client.post(f"/api/v1/reports/{uid}/review", headers=env["clinician"], json={"outcome": "rejected"})
    assert rejected.status_code == 200 and rejected.json()["review"]["status"] == "rejected"
    fhir_path = env["out"] / next(f for f in rejected.json()["files"] if f.endswith(".fhir.json"))
    dr = next(e for e in json.loads(fhir_path.read_text())["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert dr["resource"]["status"] == "final"
    assert client.get(f"/api/v1/reports/{uid}", headers=env["viewer"]).json()["review_status"] == "rejected"
    # a second review is a new revision, never an overwrite
    again = client.post(f"/api/v1/reports/{uid}/review", headers=env["clinician"], json={"outcome": "modified", "finding": "not_burn"})
    assert again.status_code == 200 and any("_review_r2" in f for f in again.json()["files"])
    # accepting an abstention is impossible; unknown outcomes and labels name their field
    report = client.get(f"/api/v1/reports/{uid}", headers=env["viewer"]).json()["report"]
    if report["finding"]["abstained"]:
        bad = client.post(f"/api/v1/reports/{uid}/review", headers=env["clinician"], json={"outcome": "accepted"})
        assert bad.status_code == 422 and bad.json()["field"] == "outcome"
    bad = client.post(f"/api/v1/reports/{uid}/review", headers=env["clinician"], json={"outcome": "modified", "finding": "tail"})
    assert bad.status_code == 422 and bad.json()["field"] == "finding"
    bad = client.post(f"/api/v1/reports/{uid}/review", headers=env["clinician"],
                      json={"outcome": "modified", "finding": "full_thickness", "case": {"weight_kg": -3}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "weight_kg"]


def test_review_form_through_the_page(env):
    client = env["client"]
    token = _login(client, CLINICIAN[0])
    uid = _uid("study-003/IMG-0001.dcm")
    page = client.get(f"/images/{uid}", headers={"accept": "text/html"}).text
    assert 'id="review-form"' in page
    forged = client.post(f"/images/{uid}/review", data={"outcome": "rejected", "frame": "1", "csrf_token": "forged"})
    assert forged.status_code == 403
    response = client.post(f"/images/{uid}/review", data={"outcome": "rejected", "frame": "1", "csrf_token": token, "case": ""},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith(f"/images/{uid}?frame=1")
    after = client.get(response.headers["location"], headers={"accept": "text/html"}).text
    assert "Rejected by Anna Smith" in after


# ----------------------------------------------------------------------------- delivery


@pytest.mark.network
def test_review_objects_go_through_the_outbox_to_a_pacs(env, tmp_path):
    """A pynetdicom Storage SCP receives the verified SR and the burned-in SC of a review."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage, Verification

    from burnscope.applications.review.service import ReviewService
    from fixtures.orthanc_local import free_port

    received: list[str] = []
    ae = AE(ae_title="PACS")
    for context in (Verification, ComprehensiveSRStorage, SecondaryCaptureImageStorage):
        ae.add_supported_context(context)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, lambda e: received.append(e.dataset.SOPClassUID) or 0x0000)])
    out = tmp_path / "out"
    shutil.copytree(env["out"] / "study-002", out / "study-002")
    settings = dict(env["settings"], delivery={"destinations": [
        {"name": "pacs", "kind": "cstore", "host": "127.0.0.1", "port": port, "called_aet": "PACS"}]})
    service = ReviewService(settings, out, components=env["components"])
    try:
        from burnscope.applications.review.auth import Principal

        record = service.review(_uid("study-002/IMG-0002.dcm"), 1, Principal("asmith", "clinician", "Smith^Anna"),
                                outcome="modified", finding="superficial")
        assert service.delivery.drain(timeout_s=30)
    finally:
        service.close()
        server.shutdown()
    assert sorted(received) == sorted(["1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"])
    assert record["review"]["verified_sr_uid"]
    assert (out / "audit.jsonl").is_file()


# ----------------------------------------------------------------------------- CLI


def test_cli_users_add_remove_and_no_start_without_users(tmp_path):
    from burnscope.applications.cli import app as cli_app

    users = tmp_path / "users.json"
    runner = CliRunner()
    out = tmp_path / "out"
    refused = runner.invoke(cli_app, ["web", "-o", str(out), "--users-file", str(users)])
    assert refused.exit_code == 2 and "burnscope web users add" in refused.output
    added = runner.invoke(cli_app, ["web", "users", "add", "doc", "--role", "clinician", "--name", "Smith^Anna",
                                    "--users-file", str(users), "--password-stdin"], input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert (users.stat().st_mode & 0o777) == 0o600
    stored = json.loads(users.read_text())["users"]["doc"]
    assert stored["hash"].startswith("$argon2id$") and PASSWORD not in users.read_text()
    short = runner.invoke(cli_app, ["web", "users", "add", "x", "--role", "viewer", "--users-file", str(users), "--password-stdin"],
                          input="short\n")
    assert short.exit_code == 2 and "at least" in short.output
    listed = runner.invoke(cli_app, ["web", "users", "list", "--users-file", str(users)])
    assert "doc\tclinician\tSmith^Anna" in listed.output and "argon2" not in listed.output
    assert runner.invoke(cli_app, ["web", "users", "remove", "doc", "--users-file", str(users)]).exit_code == 0
    assert runner.invoke(cli_app, ["web", "users", "remove", "doc", "--users-file", str(users)]).exit_code == 1
    weak = tmp_path / "tokens.txt"
    weak.write_text("short-token\n")
    refused = runner.invoke(cli_app, ["web", "-o", str(out), "--users-file", str(users), "--api-token-file", str(weak)])
    assert refused.exit_code == 2 and "at least 32" in refused.output
