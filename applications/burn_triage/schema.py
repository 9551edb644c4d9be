"""The schema of burn-triage's settings (pydantic): every key, its type, default and meaning.

``config.yaml`` beside this module holds the defaults as data; a site's YAML and the CLI
options override them; :func:`validate_settings` checks the merged result against these models
before anything heavy is loaded. Unknown keys are errors that name the key's path and the
closest known key (``source.batch_sise: unknown key; did you mean batch_size?``).
``docs/configuration.md`` is generated from these models (:func:`reference_markdown`; a test
keeps the two equal).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from burnscope.operators.dicom_loader.decoding import DEFAULT_MAX_PIXELS

#: The DICOM AE title rule (VR AE): 1–16 characters, no backslash or control characters.
_AE_TITLE = re.compile(r"^[^\\\x00-\x1f]{1,16}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class SettingsError(ValueError):
    """A bad option or config value; the message names it (one line per problem)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())


def _ae_title(value: str) -> str:
    if not _AE_TITLE.match(value or "") or not value.strip():
        raise ValueError("must be 1–16 characters without backslash or control characters (DICOM AE title)")
    return value


class WatchSettings(_Section):
    path: Optional[str] = Field(
        None, description="burnscope serve: the folder to watch when --watch is not given (null: no watched folder)."
    )
    poll_interval: float = Field(0.5, gt=0, description="Seconds between polls of the watched folder.")
    settle_seconds: float = Field(
        1.0, ge=0, description="A file is complete once its size and modification time held this long."
    )


class ScpTimeouts(_Section):
    acse_s: float = Field(30, gt=0, description="pynetdicom ACSE timeout: association messages (seconds).")
    dimse_s: float = Field(30, gt=0, description="pynetdicom DIMSE timeout: one service message (seconds).")
    network_s: float = Field(
        60, gt=0, description="An association silent this long is closed (a client that sends nothing or stalls)."
    )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # reported by the field's own validator
        return True


class ScpTlsSettings(_Section):
    cert: str = Field(description="PEM certificate (chain) of the SCP; may hold the key too.")
    key: Optional[str] = Field(None, description="PEM private key (unencrypted; mode 0600); null: it is in cert.")
    ca: Optional[str] = Field(None, description="PEM CA certificates that client certificates must chain to.")
    require_client_cert: bool = Field(
        True, description="Refuse modalities without a client certificate from ca (mutual TLS); false: verify one "
        "when presented."
    )


class ClientTlsSettings(_Section):
    ca: Optional[str] = Field(
        None, description="PEM CA certificates the server's certificate must chain to; null: the system trust store."
    )
    cert: Optional[str] = Field(None, description="PEM client certificate, for servers that require one.")
    key: Optional[str] = Field(None, description="PEM private key of cert (unencrypted; mode 0600).")
    verify: bool = Field(True, description="Verify the server's certificate and name; false only for tests (warned).")
    server_name: Optional[str] = Field(
        None, description="cstore: the name the PACS certificate must carry; null: host."
    )


_SECRET_SOURCES = {"basic": ("password",), "bearer": ("token",), "oauth2": ("client_secret",)}
_AUTH_KEYS = {"basic": ("username",), "bearer": (), "oauth2": ("token_url", "client_id", "scope")}


class AuthSettings(_Section):
    kind: Literal["basic", "bearer", "oauth2"] = Field(
        description="basic (user + password) | bearer (a fixed token) | oauth2 (client credentials grant)."
    )
    username: Optional[str] = Field(None, description="basic: the user name.")
    password_file: Optional[str] = Field(None, description="basic: file holding the password (one line; mode 0600).")
    password_env: Optional[str] = Field(None, description="basic: environment variable holding the password.")
    token_file: Optional[str] = Field(None, description="bearer: file holding the token.")
    token_env: Optional[str] = Field(None, description="bearer: environment variable holding the token.")
    token_url: Optional[str] = Field(None, description="oauth2: the token endpoint (https).")
    client_id: Optional[str] = Field(None, description="oauth2: the client id.")
    client_secret_file: Optional[str] = Field(None, description="oauth2: file holding the client secret.")
    client_secret_env: Optional[str] = Field(None, description="oauth2: environment variable holding the client secret.")
    scope: Optional[str] = Field(None, description="oauth2: requested scope (space-separated); null: the server's default.")

    @model_validator(mode="after")
    def _keys_of_the_kind(self) -> "AuthSettings":
        own = set(_AUTH_KEYS[self.kind]) | {f"{s}_{w}" for s in _SECRET_SOURCES[self.kind] for w in ("file", "env")}
        stray = [k for k in type(self).model_fields if k != "kind" and getattr(self, k) is not None and k not in own]
        if stray:
            raise ValueError(f"{', '.join(stray)} do(es) not apply to {self.kind} authentication")
        for secret in _SECRET_SOURCES[self.kind]:
            given = [w for w in ("file", "env") if getattr(self, f"{secret}_{w}")]
            if len(given) != 1:
                raise ValueError(f"{self.kind} authentication needs exactly one of {secret}_file and {secret}_env")
        required = {"basic": ("username",), "oauth2": ("token_url", "client_id")}.get(self.kind, ())
        missing = [k for k in required if not getattr(self, k)]
        if missing:
            raise ValueError(f"{self.kind} authentication needs {', '.join(missing)}")
        return self


class ScpSettings(_Section):
    ae_title: str = Field("BURNSCOPE", description="AE title of the C-STORE SCP.")
    port: int = Field(11112, ge=0, le=65535, description="TCP port (0 picks a free one).")
    bind_address: str = Field(
        "127.0.0.1", description="Listening interface; 0.0.0.0 accepts modalities and PACS from the network."
    )
    sop_classes: Union[None, Literal["all"], list[str]] = Field(
        None,
        description="Accepted storage SOP classes: null (VL photographic/microscopic/endoscopic and secondary "
        "capture), \"all\", or a list of SOP Class UIDs.",
    )
    max_pdu: int = Field(16382, ge=0, description="Maximum PDU size received (bytes; 0 = unlimited).")
    spool_dir: Optional[str] = Field(
        None, description="Folder for received files (each fsync'd before C-STORE Success); null: <output>/spool "
        "(0600 files in a 0700 folder)."
    )
    allowed_calling_aets: Optional[list[str]] = Field(
        None, description="Calling AE titles that may store; any other is rejected (\"calling AE not recognised\"); "
        "null: any."
    )
    require_called_aet: bool = Field(False, description="Reject associations addressed to another AE title than ae_title.")
    allowed_addresses: Optional[list[str]] = Field(
        None, description="Peer IP addresses or CIDR networks that may connect; others are disconnected; null: any."
    )
    tls: Optional[ScpTlsSettings] = Field(None, description="DICOM TLS (PS3.15 BCP 195); null: plain DICOM.")
    timeouts: ScpTimeouts = Field(default_factory=ScpTimeouts)
    max_associations: int = Field(
        10, ge=1, description="Simultaneous associations; more are rejected transiently (the modality retries)."
    )
    allow_any_caller: bool = Field(
        False, description="Accept any caller on a non-loopback bind_address (no allowed_calling_aets, "
        "allowed_addresses or client-certificate TLS): only behind a firewall that admits the modalities alone."
    )

    @model_validator(mode="after")
    def _someone_decides_who_may_store(self) -> "ScpSettings":
        """Secure by default: an SCP reachable from the network names who may store."""
        fenced = (self.allowed_calling_aets is not None or self.allowed_addresses is not None
                  or (self.tls is not None and self.tls.require_client_cert))
        if not _is_loopback(self.bind_address) and not fenced and not self.allow_any_caller:
            raise ValueError(
                f"bind_address {self.bind_address} is reachable from the network, and nothing says who may store: "
                "set allowed_calling_aets, allowed_addresses or tls (with require_client_cert), "
                "or allow_any_caller: true behind a firewall"
            )
        return self

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str) -> str:
        return _ae_title(value)

    @field_validator("allowed_calling_aets")
    @classmethod
    def _check_aets(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        if value is not None:
            if not value:
                raise ValueError("is empty: nobody could store (null allows every AE)")
            for aet in value:
                _ae_title(aet)
        return value

    @field_validator("allowed_addresses")
    @classmethod
    def _networks(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        if value is not None:
            if not value:
                raise ValueError("is empty: nobody could connect (null allows every address)")
            for item in value:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"not an IP address or CIDR network: {item!r}") from None
        return value

    @field_validator("bind_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address (e.g. 127.0.0.1 or 0.0.0.0)") from None
        return value

    @field_validator("sop_classes")
    @classmethod
    def _uids(cls, value: Any) -> Any:
        if isinstance(value, list):
            bad = [uid for uid in value if not _UID.match(uid)]
            if bad:
                raise ValueError(f"not SOP Class UIDs: {', '.join(map(repr, bad))}")
        return value


class SourceSettings(_Section):
    kind: Literal["folder", "watch", "scp"] = Field(
        "folder", description="folder (read once) | watch (pick up files as they land) | scp (DICOM C-STORE receiver)."
    )
    batch_size: int = Field(8, ge=1, description="Images per message; batches keep per-hop overhead off the hot path.")
    workers: int = Field(
        1, ge=1, description="Decode workers; threads help large JPEG/J2K frames, not small ones "
        "(docs/benchmarks/decode-cpu.md)."
    )
    executor: Literal["thread", "process"] = Field(
        "thread", description="Folder source with isolate: false: thread | process (a forkserver pool)."
    )
    isolate: bool = Field(
        True, description="Decode in supervised worker processes: a codec that crashes (segfault, abort, Rust "
        "panic) or hangs costs one file (error record decoder_crashed / decode_timeout), never the run. false: "
        "decode in-process, for trusted input only.",
    )
    decode_timeout_s: float = Field(
        30.0, gt=0, description="isolate: seconds one file may take to decode before its worker is stopped."
    )
    worker_memory_mb: int = Field(
        4096, ge=0, description="isolate: address-space limit of each decode worker (MiB; 0: no limit)."
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="Rows × columns × frames of one file above this → error record too_large."
    )
    scaled_decode: Literal["auto", "off"] = Field(
        "auto",
        description="auto: JPEG photographs much larger than the model input are decoded at 1/2, 1/4 or 1/8 scale "
        "(DCT domain; short side still ≥ 224), then transformed exactly (docs/benchmarks/scaled-decode.md); off: "
        "full-size decoding.",
    )
    gpu_decode: Literal["off", "auto", "on"] = Field(
        "off",
        description="Folder source: decode JPEG / JPEG 2000 frames on the GPU with nvImageCodec, a batch at a time, "
        "into device memory (auto: when nvImageCodec and a GPU are usable; frames it cannot decode fall back to the "
        "CPU). Needs executor: thread. GPU decoding runs in this process, not in the isolated decode workers (device "
        "memory does not cross processes).",
    )
    select: Union[None, str, dict[str, Any]] = Field(
        None,
        description="Series-selection rules (a mapping, or a JSON file path; docs/operators/dicom.md); null: every "
        "image. Not selected → skipped and counted, no error record.",
    )
    period_ms: float = Field(
        0, ge=0, description="> 0: emit one batch per period (pacing for unloaded latency); 0: as fast as possible."
    )
    stop_after_idle: Optional[float] = Field(
        None, gt=0, description="watch/scp: stop after this many seconds without a new file (null: run until stopped)."
    )
    max_files: Optional[int] = Field(None, ge=1, description="watch/scp: stop after this many files (null: no limit).")
    journal: Optional[str] = Field(
        None,
        description="watch/scp: the intake journal (SQLite) of files acknowledged or seen and not yet reported; "
        "a restart processes them first (docs/reliability.md). null: <output>/journal.sqlite.",
    )
    watch: WatchSettings = Field(default_factory=WatchSettings)
    scp: ScpSettings = Field(default_factory=ScpSettings)

    @field_validator("scaled_decode", "gpu_decode", mode="before")
    @classmethod
    def _yaml_switches(cls, value: Any, info: Any) -> Any:
        # YAML 1.1 reads an unquoted off/on as false/true
        if value is False:
            return "off"
        if value is True:
            return "on" if info.field_name == "gpu_decode" else "auto"
        return value


class PreprocessSettings(_Section):
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="auto | cpu | gpu (CuPy when a GPU is usable).")
    dtype: Literal["float32", "float16"] = Field("float32", description="Element type of the model input.")
    keep_thumbnails: bool = Field(True, description="Small RGB thumbnails for the reports.")


class InferenceSettings(_Section):
    model_config_name: str = Field(
        "biomedclip", alias="model_config", description="Model architecture: engines/configs/<name>.json."
    )
    backend: Literal["auto", "onnxruntime", "torch", "tensorrt"] = Field(
        "auto", description="auto: torch on a GPU, onnxruntime on the CPU."
    )
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8", "int8-dynamic", "fp8"] = Field(
        "auto", description="auto: fp16 on a GPU, fp32 on the CPU."
    )
    device: Literal["auto", "cpu", "gpu", "cuda"] = Field("auto", description="auto | cpu | gpu.")
    compile: bool = Field(
        False, description="torch backend: torch.compile the image tower before its CUDA graphs are captured "
        "(slower start; measured by benchmarks/tower_options.py)."
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _not_the_instrument(cls, value: Any) -> Any:
        from burnscope.engines.base import INSTRUMENT_BACKEND, INSTRUMENT_REFUSAL

        if value == INSTRUMENT_BACKEND:  # the benchmark's tower stand-in: never for reports
            raise ValueError(INSTRUMENT_REFUSAL)
        return value


class BurnSeveritySettings(_Section):
    abstain_threshold: float = Field(
        0.5, ge=0, le=1, description="Top probability below this → \"needs clinician review\"."
    )
    head: Optional[str] = Field(
        None, description="A trained head file (burnscope train-head); null → the zero-shot prompt ensemble."
    )


class DecisionSupportSettings(_Section):
    default_case: dict[str, Any] = Field(
        default_factory=dict,
        description="Case data applied to every image (keys as in `burnscope decide`); each image's sidecar "
        "overrides it key by key. `--case FILE` sets it.",
    )


class ReportSettings(_Section):
    formats: list[str] = Field(
        default_factory=lambda: ["json", "txt", "sr", "pdf", "pdf_dcm", "fhir"],
        min_length=1,
        description="json, txt, sr (.sr.dcm, DICOM Comprehensive SR TID 1500), pdf, pdf_dcm (Encapsulated PDF), "
        "fhir (.fhir.json, R4 transaction Bundle).",
    )
    study_rollup: bool = Field(True, description="One study-level summary where a study has several images.")
    date_format: str = Field(
        "%Y-%m-%d", description="How the text and PDF reports print dates (a strftime pattern; ISO 8601 by default)."
    )

    @field_validator("date_format")
    @classmethod
    def _strftime(cls, value: str) -> str:
        import datetime as dt

        if "%" not in value or dt.date(2001, 2, 3).strftime(value) == value:
            raise ValueError("must be a strftime pattern such as %Y-%m-%d or %d/%m/%Y")
        return value

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        from burnscope.operators.report.formats import FORMATS

        unknown = [f for f in value if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
        return value


class Destination(_Section):
    name: str = Field(description="Name of the destination (outbox rows and `burnscope outbox` use it).")
    kind: Literal["cstore", "stowrs", "fhir"] = Field(description="cstore (DICOM C-STORE) | stowrs | fhir.")
    host: Optional[str] = Field(None, description="cstore: the PACS host.")
    port: Optional[int] = Field(None, ge=1, le=65535, description="cstore: the PACS port.")
    called_aet: Optional[str] = Field(None, description="cstore: the PACS AE title.")
    calling_aet: Optional[str] = Field(None, description="cstore: burnscope's AE title.")
    url: Optional[str] = Field(None, description="stowrs: the DICOMweb base URL; fhir: the FHIR base URL.")
    timeout_s: Optional[float] = Field(None, gt=0, description="Per-request timeout (seconds).")
    tls: Optional[ClientTlsSettings] = Field(
        None, description="cstore: DICOM TLS (null: plain DICOM); stowrs/fhir: how https URLs are verified (null: "
        "the system trust store)."
    )
    auth: Optional[AuthSettings] = Field(None, description="stowrs/fhir: HTTP authentication; null: none.")

    @model_validator(mode="after")
    def _needed_keys(self) -> "Destination":
        needed = ("host", "port") if self.kind == "cstore" else ("url",)
        missing = [k for k in needed if getattr(self, k) is None]
        if missing:
            raise ValueError(f"destination {self.name!r} ({self.kind}) needs {', '.join(missing)}")
        for key in ("called_aet", "calling_aet"):
            if getattr(self, key) is not None:
                _ae_title(getattr(self, key))
        if self.auth is not None and self.kind == "cstore":
            raise ValueError(f"destination {self.name!r}: auth applies to stowrs and fhir; C-STORE uses tls")
        return self


class DeliverySettings(_Section):
    destinations: list[Destination] = Field(
        default_factory=list,
        description="Network destinations, each fed through the durable outbox (docs/integration.md); empty: "
        "reports go to the output folder only.",
    )
    outbox: Optional[str] = Field(None, description="Outbox database; null: <output>/outbox.sqlite.")
    echo: bool = Field(True, description="C-ECHO every C-STORE destination at start.")
    drain_timeout_s: float = Field(
        30, ge=0, description="At the end of a run keep delivering this long; the rest waits in the outbox."
    )
    max_attempts: Optional[int] = Field(
        None, ge=1, description="Transient failures (server down or slow, 5xx, 429, authentication or TLS refused) "
        "after which a delivery is marked failed; it stays in the outbox for `burnscope outbox retry`. null: retried "
        "for ever with backoff (a server down for a weekend catches up by itself; the outbox-growing alert of "
        "docs/service.md shows a destination that never recovers).",
    )

    @field_validator("destinations")
    @classmethod
    def _unique_names(cls, value: list[Destination]) -> list[Destination]:
        names = [d.name for d in value]
        doubles = sorted({n for n in names if names.count(n) > 1})
        if doubles:
            raise ValueError(f"destination names must be unique: {', '.join(doubles)}")
        return value


class PriorityRuleSettings(_Section):
    attribute: str = Field(description="A DICOM keyword, looked up in the dataset and its sequences.")
    equals: list[str] = Field(min_length=1, description="Values (any case) that make the image STAT.")

    @field_validator("attribute")
    @classmethod
    def _keyword(cls, value: str) -> str:
        from burnscope.operators.priority.core import check_keyword

        return check_keyword(value)


class PrioritySettings(_Section):
    dimse_high_is_stat: bool = Field(True, description="A C-STORE sent with DIMSE Priority HIGH is STAT.")
    stat_calling_aets: list[str] = Field(
        default_factory=list, description="Calling AE titles whose images are STAT (e.g. the emergency department)."
    )
    rules: list[PriorityRuleSettings] = Field(
        default_factory=lambda: [PriorityRuleSettings(attribute="RequestedProcedurePriority", equals=["STAT"])],
        description="DICOM attribute rules; any match makes the image STAT.",
    )
    sidecar: bool = Field(True, description="A case sidecar with \"priority\": \"stat\" makes the image STAT.")
    stat_lane: bool = Field(
        True, description="serve: STAT images get an image tower of their own (a high-priority CUDA stream on a GPU)."
    )

    @field_validator("stat_calling_aets")
    @classmethod
    def _aets(cls, value: list[str]) -> list[str]:
        return [_ae_title(v) for v in value]


class BatchingSettings(_Section):
    max_batch: int = Field(8, ge=1, le=1024, description="serve: most images per image-tower batch.")
    max_delay_ms: float = Field(
        5, ge=0, description="serve: a partial batch leaves once its oldest image waited this long (0: at once)."
    )


class ReportingSettings(_Section):
    workers: Optional[int] = Field(
        None, ge=0, description="serve: report-rendering processes (null: one per core but one, at most 8; "
        "0: render in the graph).",
    )


class MetricsSettings(_Section):
    port: Optional[int] = Field(None, ge=0, le=65535, description="serve: /metrics, /healthz, /readyz on this port "
                                "(null: off; --metrics-port sets it).")
    bind_address: str = Field(
        "127.0.0.1", description="Interface of the metrics port; 0.0.0.0 inside a container whose port is published."
    )
    check_destinations: bool = Field(
        True, description="/readyz also needs every network destination reachable (TCP, checked every 15 s)."
    )
    token_file: Optional[str] = Field(
        None, description="File holding a bearer token that /metrics and /readyz then require (Prometheus: "
        "authorization.credentials_file); /healthz stays open. Set it whenever bind_address is not loopback.",
    )
    token_env: Optional[str] = Field(None, description="Environment variable holding that token (instead of a file).")
    allow_unauthenticated: bool = Field(
        False, description="Serve /metrics and /readyz without a token on a non-loopback bind_address (only where "
        "a network policy admits the scraper alone)."
    )

    @field_validator("bind_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return ScpSettings._address(value)  # the same rule as the SCP's interface

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "MetricsSettings":
        """Secure by default: metrics reachable from the network require a token."""
        if (not _is_loopback(self.bind_address) and not (self.token_file or self.token_env)
                and not self.allow_unauthenticated):
            raise ValueError(
                f"bind_address {self.bind_address} is reachable from the network: set token_file or token_env "
                "(a bearer token for /metrics and /readyz), or allow_unauthenticated: true behind a network policy"
            )
        return self


class ServiceSettings(_Section):
    shutdown_timeout_s: float = Field(
        300, gt=0, description="serve: after SIGTERM, finish the images in flight for at most this long "
        "(a second SIGTERM stops at once)."
    )


class SchedulerSettings(_Section):
    kind: Literal["greedy", "event_based"] = Field(
        "event_based", description="greedy | event_based (stages overlap on a multi-core machine)."
    )
    worker_threads: int = Field(4, ge=1, description="event_based: worker threads.")
    stop_on_deadlock_timeout_ms: int = Field(
        200, ge=0,
        description="How long the scheduler must find nothing ready or running before it ends the graph; the "
        "run monitor ends it once everything has drained, so this is only the delay at the very end "
        "(docs/reliability.md).",
    )


class RunSettings(_Section):
    grace_s: float = Field(
        30, ge=0, description="On SIGINT/SIGTERM: how long images in flight may take to finish before the run "
        "stops and records them as pending (a second signal stops at once)."
    )
    stall_timeout_s: Optional[float] = Field(
        600, gt=0, description="Messages in flight and no stage finishing one for this long: the run ends and "
        "lists what was not reported (exit code 3). null: wait for ever."
    )
    monitor_period_s: float = Field(
        0.05, gt=0, le=5, description="How often the run monitor checks whether everything has drained."
    )


class DistributedSettings(_Section):
    heartbeat_s: float = Field(
        0.5, gt=0, le=10, description="--driver/--worker: every fragment sends a heartbeat this often (and keeps "
        "itself alive with it)."
    )
    link_timeout_s: float = Field(
        30, gt=0, description="--driver/--worker: a fragment upstream silent this long before its end of stream "
        "is lost: the summary lists the images not reported and the process exits 3. Larger than the slowest batch."
    )
    startup_timeout_s: float = Field(
        120, gt=0, description="--driver/--worker: the other fragments must be heard within this long of the "
        "start (Holoscan's driver would wait for a missing worker for ever); else exit 3."
    )


class TriageSettings(_Section):
    """Every setting of the burn-triage application."""

    source: SourceSettings = Field(default_factory=SourceSettings)
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    burn_severity: BurnSeveritySettings = Field(default_factory=BurnSeveritySettings)
    decision_support: DecisionSupportSettings = Field(default_factory=DecisionSupportSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    priority: PrioritySettings = Field(default_factory=PrioritySettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    distributed: DistributedSettings = Field(default_factory=DistributedSettings)


# -- validation ------------------------------------------------------------------------------------


def _known_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``path`` (a pydantic error location) accepts."""
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or ())]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
            next(
                (a for c in candidates for a in getattr(c, "__args__", ()) or ()
                 if isinstance(a, type) and issubclass(a, BaseModel)),
                None,
            ),
        )
        if model is None:
            return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _describe(error: dict[str, Any], model: type[BaseModel] = None) -> str:
    loc = error["loc"]
    path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    if error["type"] == "extra_forbidden":
        known = _known_keys(model or TriageSettings, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {close[0]}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"{path}: unknown key{hint}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{path}: is required"
    if error["type"] == "literal_error":
        choices = error.get("ctx", {}).get("expected", "").replace("'", "")
        return f"{path}: unknown {loc[-1]} {error.get('input')!r}; choose one of: {choices.replace(' or ', ', ')}"
    value = error.get("input")
    shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
    return f"{path}: {message}{shown}"


def validate_settings(settings: dict[str, Any], schema: type[TriageSettings] | None = None) -> dict[str, Any]:
    """The settings checked against ``schema`` (:class:`TriageSettings`, or an application's
    extension of it), as a plain dict with every key.

    Raises :class:`SettingsError` naming every problem, one per line.
    """
    schema = schema or TriageSettings
    try:
        model = schema.model_validate(settings)
    except ValidationError as exc:
        raise SettingsError("\n".join(_describe(e, schema) for e in exc.errors())) from None
    checked = model.model_dump(by_alias=True)
    # a destination's unset keys fall back to its transport's defaults
    checked["delivery"]["destinations"] = [_given(d) for d in checked["delivery"]["destinations"]]
    return checked


def _given(mapping: dict[str, Any]) -> dict[str, Any]:
    """The keys that were given (not None), nested mappings (tls, auth) too."""
    return {k: _given(v) if isinstance(v, dict) else v for k, v in mapping.items() if v is not None}


# -- reference documentation -----------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    names = {"str": "text", "int": "integer", "float": "number", "bool": "true/false"}
    return names.get(getattr(annotation, "__name__", ""), getattr(annotation, "__name__", str(annotation)))


def _default_text(field: Any) -> str:
    if field.is_required():
        return "(required)"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return "(section)"
    if isinstance(default, str):
        return f"`{default}`"
    if isinstance(default, list) and default and isinstance(default[0], BaseModel):
        return "`" + str([d.model_dump() for d in default]).replace("'", "") + "`"
    return f"`{'null' if default is None else default}`".replace("True", "true").replace("False", "false")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if nested is not None:
            rows += _rows(nested, f"{key}.")
            continue
        items = getattr(annotation, "__args__", ())
        optional = get_origin(annotation) in (Union, types.UnionType)
        section = next((a for a in items if isinstance(a, type) and issubclass(a, BaseModel)), None) if optional else None
        if section is not None:  # an optional section (e.g. tls): null turns it off
            meaning = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{key}` | section or null | `null` | {meaning} |")
            rows += _rows(section, f"{key}.")
            continue
        listed = next((a for a in items if isinstance(a, type) and issubclass(a, BaseModel)), None)
        kind = (("list of destinations" if listed is Destination else "list of rules") if listed is not None
                else _type_name(annotation))
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {kind} | {_default_text(field)} | {meaning} |")
        if listed is not None:
            rows += _rows(listed, f"{key}[].")
    return rows


def reference_markdown() -> str:
    """docs/configuration.md: the configuration reference, generated from these models."""
    lines = [
        "# burn-triage configuration reference",
        "",
        "Generated from `applications/burn_triage/schema.py` (do not edit by hand; "
        "`python -m burnscope.applications.burn_triage.schema > docs/configuration.md`).",
        "The defaults are `applications/burn_triage/config.yaml`; a site's YAML (`-c FILE`) and the CLI options",
        "override them. Unknown keys and wrong values stop the command before the model loads, with the key's",
        "path: `source.batch_sise: unknown key; did you mean batch_size?`.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    return "\n".join(lines + _rows(TriageSettings, "")) + "\n"


def default_yaml_path() -> Path:
    return Path(__file__).with_name("config.yaml")


if __name__ == "__main__":
    print(reference_markdown(), end="")
