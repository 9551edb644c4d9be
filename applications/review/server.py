"""The review app: FastAPI pages and REST API over :class:`~.service.ReviewService`.

Every route but ``/login`` and the app's own CSS/JS needs a session cookie or an API token; an
unauthenticated API call gets a JSON 401, an unauthenticated page the login form with status
401. URLs carry SOP Instance UIDs (and frame numbers) only. See docs/review.md.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from burnscope.common.messages import DEMO_BANNER

from . import bodychart
from .auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, LoginThrottle, Principal, SessionStore, TokenStore, UserStore, same_token
from .service import Rejected, ReviewService

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
API_PREFIX = "/api/v1"
#: Reachable without logging in: the login form and the app's own stylesheet and scripts.
PUBLIC_PATHS = ("/login", "/static/app/")
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
DOCS_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)


class ReviewRequest(BaseModel):
    """Body of ``POST /api/v1/reports/{uid}/review``."""

    outcome: str = Field(description="accepted, rejected or modified")
    finding: str | None = Field(default=None, description="the clinician's burn depth (class key); required for modified")
    case: dict[str, Any] | None = Field(default=None, description="case data as for `burnscope decide` (e.g. body-chart burns)")
    comment: str = Field(default="", max_length=1000)
    frame: int = Field(default=1, ge=1)


class _NotAuthenticated(Exception):
    pass


class BodySizeLimit:
    """Pure ASGI middleware: a request body larger than its limit gets 413 before it is read;
    a body without Content-Length (chunked) is refused with 411."""

    def __init__(self, app, *, upload_bytes: int, other_bytes: int, upload_paths: tuple[str, ...]) -> None:
        self.app, self.upload_bytes, self.other_bytes, self.upload_paths = app, upload_bytes, other_bytes, upload_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        limit = self.upload_bytes if scope["path"] in self.upload_paths else self.other_bytes
        length = headers.get(b"content-length")
        if length is None and headers.get(b"transfer-encoding"):
            return await _plain(send, 411, "length_required", "send the body with a Content-Length")
        try:
            size = int(length or 0)
        except ValueError:
            return await _plain(send, 400, "bad_request", "invalid Content-Length")
        if size > limit:
            return await _plain(send, 413, "too_large", f"request body over the limit of {limit} bytes")
        return await self.app(scope, receive, send)


async def _plain(send, status: int, reason: str, message: str) -> None:
    body = json.dumps({"detail": {"reason": reason, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(
    service: ReviewService,
    users: UserStore,
    tokens: TokenStore | None = None,
    *,
    secure_cookies: bool = False,
) -> FastAPI:
    """The FastAPI application. ``secure_cookies``: mark cookies Secure (serving over TLS); a
    request that arrives over HTTPS gets Secure cookies anyway."""
    web = service.web
    tokens = tokens or TokenStore()
    sessions = SessionStore(
        idle_s=float(web.get("session_idle_minutes") or 30) * 60, absolute_s=float(web.get("session_max_hours") or 12) * 3600
    )
    throttle_user, throttle_ip = LoginThrottle(limit=5), LoginThrottle(limit=20)  # one name; one address
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    bearer = HTTPBearer(auto_error=False, description="An API token from --api-token-file")

    app = FastAPI(
        title="burnscope review API",
        version="1",
        description=(
            "Burn image triage: analyse an image, decide a case (TBSA, fluids, referral), review a finding. "
            "Decision support for trained clinicians, not a diagnosis."
            + (f" **{DEMO_BANNER}**" if service.demo else "")
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service, app.state.sessions = service, sessions
    app.mount("/static/app", StaticFiles(directory=str(HERE / "static")), name="app-static")
    import fastapi_offline

    app.mount("/static/docs", StaticFiles(directory=str(Path(fastapi_offline.__file__).parent / "static")), name="docs-static")
    upload_limit = int(float(web.get("max_upload_mb") or 64) * 1024 * 1024)
    app.add_middleware(
        BodySizeLimit,
        upload_bytes=upload_limit,
        other_bytes=int(float(web.get("max_request_kb") or 512) * 1024),
        upload_paths=(f"{API_PREFIX}/analyze",),
    )

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        if path.startswith("/static/docs/") and _principal(request) is None:
            return _unauthenticated(request)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = DOCS_CSP if path == "/docs" else CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    # -- authentication ---------------------------------------------------------------------
    def _principal(request: Request, credentials: HTTPAuthorizationCredentials | None = None) -> Principal | None:
        header = request.headers.get("authorization", "")
        if credentials is None and header.lower().startswith("bearer "):
            credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:].strip())
        if credentials is not None:
            return tokens.authenticate(credentials.credentials)
        who = sessions.get(request.cookies.get(SESSION_COOKIE))
        if who is not None and who.username not in users.users():  # removed since logging in
            sessions.drop(request.cookies.get(SESSION_COOKIE))
            return None
        return who

    def _unauthenticated(request: Request) -> Response:
        if request.url.path.startswith("/api/") or request.url.path in ("/openapi.json",) or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": "not authenticated"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return _login_page(request, status=401, next_path=request.url.path)

    def principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        who = _principal(request, credentials)
        if who is None:
            raise _NotAuthenticated()
        request.state.principal = who
        return who

    def _check_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Rejected(403, "cross_origin", "cross-origin request refused")

    async def csrf(request: Request, who: Principal = Depends(principal)) -> Principal:
        """Cookie-authenticated writes need the session's CSRF token (form field or header)."""
        if who.via == "token":
            return who
        _check_origin(request)
        sent = request.headers.get("x-csrf-token")
        if not sent and request.headers.get("content-type", "").startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            sent = (await request.form()).get("csrf_token")
        if not same_token(str(sent or ""), who.csrf):
            raise Rejected(403, "csrf", "missing or wrong CSRF token")
        return who

    @app.exception_handler(_NotAuthenticated)
    async def _on_unauthenticated(request: Request, exc: _NotAuthenticated):
        return _unauthenticated(request)

    @app.exception_handler(Rejected)
    async def _on_rejected(request: Request, exc: Rejected):
        if exc.status == 422 and exc.field:
            detail: Any = [{"loc": ["body", *_loc(exc.field)], "msg": exc.message, "type": exc.reason}]
        else:
            detail = exc.as_dict()
        if _wants_html(request):
            return _error_page(request, exc.status, exc.message)
        return JSONResponse({"detail": detail, "reason": exc.reason, "field": exc.field}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError):
        # FastAPI's own 422, without echoing the submitted values back
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    def _wants_html(request: Request) -> bool:
        return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")

    def _secure(request: Request) -> bool:
        return secure_cookies or request.url.scheme == "https"

    # -- pages: login -----------------------------------------------------------------------
    def _login_page(request: Request, *, status: int = 200, next_path: str = "/", error: str = "") -> Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = templates.TemplateResponse(
            request, "login.html", {"csrf": token, "next": _safe_next(next_path), "error": error, "demo": service.demo,
                                    "banner": DEMO_BANNER, "user": None},
            status_code=status,
        )
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/login")
        return response

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/"):
        return _login_page(request, next_path=next)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, username: str = Form(..., max_length=64), password: str = Form(..., max_length=1024),
                    csrf_token: str = Form(...), next: str = Form("/")):
        _check_origin(request)
        if not same_token(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
            return _login_page(request, status=403, next_path=next, error="The form expired; please sign in again.")
        client = request.client.host if request.client else "-"
        wait = max(throttle_user.blocked(username), throttle_ip.blocked(client))
        if wait > 0:
            return _login_page(request, status=429, next_path=next, error=f"Too many attempts; try again in {int(wait) + 1} s.")
        who = users.authenticate(username, password)
        if who is None:
            throttle_user.failed(username)
            throttle_ip.failed(client)
            return _login_page(request, status=401, next_path=next, error="Unknown user name or wrong password.")
        throttle_user.succeeded(username)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(SESSION_COOKIE, sessions.create(who), httponly=True, samesite="strict", secure=_secure(request), path="/")
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        log.info("login: %s (%s)", who.username, who.role)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request, who: Principal = Depends(csrf)):
        sessions.drop(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- pages ------------------------------------------------------------------------------
    def _page(request: Request, name: str, who: Principal, **context: Any) -> Response:
        info = service.model_info
        return templates.TemplateResponse(
            request,
            name,
            {"user": who, "csrf": who.csrf, "demo": service.demo or context.pop("any_demo", False), "banner": DEMO_BANNER,
             "model": info, **context},
        )

    def _error_page(request: Request, status: int, message: str) -> Response:
        who = getattr(request.state, "principal", None)
        return templates.TemplateResponse(
            request, "error.html", {"user": who, "csrf": getattr(who, "csrf", ""), "status": status, "message": message,
                                    "demo": service.demo, "banner": DEMO_BANNER}, status_code=status
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def worklist(request: Request, who: Principal = Depends(principal)):
        studies = service.store.studies()
        return _page(request, "worklist.html", who, studies=studies, any_demo=any(s["demo"] for s in studies))

    @app.get("/images/{uid}", response_class=HTMLResponse, include_in_schema=False)
    def image_page(request: Request, uid: str, frame: int = Query(1, ge=1), who: Principal = Depends(principal)):
        entry = _entry(uid, frame)
        from burnscope.operators.report.core import label_display
        from burnscope.operators.report.review import CLINICIAN_LABELS

        latest = entry.latest_review
        # the chart opens on the newest signed case, else on the report's own
        case = dict((latest["report"].get("case") if latest else None) or entry.report.get("case") or {})
        return _page(
            request, "image.html", who, entry=entry, report=entry.report, review=entry.latest_review,
            probabilities=sorted((entry.report["finding"].get("probabilities") or {}).items(), key=lambda kv: -(kv[1] or 0)),
            label_display=label_display, labels=[(k, label_display(k)) for k in CLINICIAN_LABELS],
            figures={name: bodychart.chart(name) for name in bodychart.FIGURES},
            initial_figure="child" if isinstance(case.get("age_years"), (int, float)) and case["age_years"] < 10 else "adult",
            case_json=json.dumps(case, ensure_ascii=False).replace("<", "\\u003c"), any_demo=bool(entry.report.get("demo_model")),
            has_image=service.source_path(entry.report) is not None,
        )

    @app.get("/images/{uid}/photo.png", include_in_schema=False)
    def photo(uid: str, frame: int = Query(1, ge=1), who: Principal = Depends(principal)):
        png = service.image_png(_entry(uid, frame).report)
        if png is None:
            raise Rejected(404, "no_image", "the source image of this report is no longer available")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    @app.post("/images/{uid}/review", include_in_schema=False)
    async def review_form(request: Request, uid: str, who: Principal = Depends(csrf)):
        form = await request.form()
        case = _json_field(form.get("case"), "case")
        frame = _int(form.get("frame") or 1, "frame")
        service.review(uid, frame, who, outcome=str(form.get("outcome") or ""), finding=str(form.get("finding") or "") or None,
                       case=case, comment=str(form.get("comment") or "")[:1000])
        return RedirectResponse(f"/images/{uid}?frame={frame}&reviewed=1", status_code=303)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(who: Principal = Depends(principal)):
        return get_swagger_ui_html(openapi_url="/openapi.json", title="burnscope review API",
                                   swagger_js_url="/static/docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static/docs/swagger-ui.css",
                                   swagger_favicon_url="/static/app/favicon.svg")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(who: Principal = Depends(principal)):
        return JSONResponse(app.openapi())

    # -- REST API ---------------------------------------------------------------------------
    @app.post(f"{API_PREFIX}/analyze", tags=["analysis"], summary="Analyse a DICOM instance or a photo")
    async def analyze(
        request: Request,
        file: UploadFile = File(..., description="A DICOM Part 10 file, or a JPEG/PNG photo (wrapped as VL Photographic)"),
        case: str | None = Form(None, description="Case JSON as for `burnscope decide`"),
        metadata: str | None = Form(None, description="Photo metadata JSON (body_site, patient_id, …; see wrap-photo)"),
        who: Principal = Depends(csrf),
    ):
        """Runs loader → preprocess → BiomedCLIP → burn head → decision support → reports and
        returns the report JSON (finding, probabilities, decision, `demo` and `banner`)."""
        data = await file.read(upload_limit + 1)
        if len(data) > upload_limit:
            raise Rejected(413, "too_large", f"file over the limit of {upload_limit} bytes", "file")
        case_obj = _json_field(case, "case")
        meta_obj = _json_field(metadata, "metadata")
        import anyio

        return await anyio.to_thread.run_sync(lambda: service.analyze(data, case_obj, meta_obj))

    @app.get(f"{API_PREFIX}/studies", tags=["reports"], summary="Studies and their images, STAT first then newest")
    def studies(who: Principal = Depends(principal)):
        return {"demo": service.demo, "banner": DEMO_BANNER if service.demo else "", "studies": service.store.studies()}

    @app.get(f"{API_PREFIX}/reports/{{sop_instance_uid}}", tags=["reports"], summary="The newest report of an image, and its reviews")
    def report(sop_instance_uid: str, frame: int = Query(1, ge=1), who: Principal = Depends(principal)):
        entry = _entry(sop_instance_uid, frame)
        return {"report": entry.report, "review_status": entry.status, "priority": entry.priority,
                "reviews": [r["review"] for r in entry.reviews], "stem": entry.stem}

    @app.post(f"{API_PREFIX}/reports/{{sop_instance_uid}}/review", tags=["reports"],
              summary="Accept, reject or correct the AI finding (clinicians only)")
    def review(sop_instance_uid: str, body: ReviewRequest, who: Principal = Depends(csrf)):
        """Writes a verified SR, a final/amended FHIR DiagnosticReport, a verified Secondary
        Capture and a feedback record, and hands them to the outbox."""
        _uid(sop_instance_uid)
        record = service.review(sop_instance_uid, body.frame, who, outcome=body.outcome, finding=body.finding,
                                case=body.case, comment=body.comment)
        return {"review": record["review"], "files": record["files"], "feedback": record["feedback"],
                "decision_support": record["report"]["decision_support"]}

    @app.post(f"{API_PREFIX}/decide", tags=["decision support"], summary="TBSA, Parkland/Brooke fluids and ABA referral for a case")
    def decide(case: dict[str, Any], who: Principal = Depends(csrf)):
        """The same computation as `burnscope decide CASE.json --json`; 422 names a bad field."""
        return service.decide(case)

    # -- helpers ----------------------------------------------------------------------------
    def _entry(uid: str, frame: int):
        _uid(uid)
        entry = service.store.get(uid, frame)
        if entry is None:
            raise Rejected(404, "not_found", "no report for this SOP Instance UID and frame")
        return entry

    return app


def _uid(uid: str) -> None:
    if len(uid) > 64 or not UID_RE.match(uid):
        raise Rejected(422, "invalid_uid", "sop_instance_uid: not a DICOM UID", "sop_instance_uid")


def _int(value: Any, field: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Rejected(422, "invalid_value", f"{field}: must be a whole number", field) from None
    if number < 1:
        raise Rejected(422, "invalid_value", f"{field}: must be ≥ 1", field)
    return number


def _json_field(text: Any, field: str) -> dict[str, Any] | None:
    if text in (None, ""):
        return None
    try:
        value = json.loads(str(text))
    except ValueError:
        raise Rejected(422, "invalid_json", f"{field}: not valid JSON", field) from None
    if not isinstance(value, dict):
        raise Rejected(422, "invalid_json", f"{field}: must be a JSON object", field)
    return value


def _loc(field: str) -> list[Any]:
    """``burns[0].fraction`` → ``["burns", 0, "fraction"]``."""
    out: list[Any] = []
    for part in field.split("."):
        name, *indices = part.split("[")
        if name:
            out.append(name)
        out += [int(i.rstrip("]")) for i in indices if i.rstrip("]").isdigit()]
    return out


def _safe_next(path: str | None) -> str:
    """Only a local path (no scheme, no host, no backslash tricks) may follow a login."""
    path = path or "/"
    if not path.startswith("/") or path.startswith("//") or "\\" in path or urlsplit(path).netloc:
        return "/"
    return path


__all__ = ["create_app"]
