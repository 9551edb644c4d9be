"""A throwaway local Orthanc PACS for tests and integration dry runs.

Orthanc listens on every interface and has no bind option, so run it only inside a network
namespace that has loopback alone (:func:`loopback_namespace_command` builds the ``unshare -n``
command line that re-executes a command there). :class:`LocalOrthanc` writes a temporary
configuration (storage under a given folder, DICOMweb plugin on), starts ``Orthanc`` and stops
it by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

DICOMWEB_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
NAMESPACE_ENV = "BURNSCOPE_IN_NETNS"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (os.path.exists("/usr/sbin/Orthanc") and "/usr/sbin/Orthanc") or None


def dicomweb_plugin() -> str | None:
    for folder in DICOMWEB_PLUGIN_DIRS:
        path = Path(folder) / "libOrthancDicomWeb.so"
        if path.exists():
            return str(path)
    return None


def in_loopback_namespace() -> bool:
    """True when this process runs in a namespace whose only interface is loopback."""
    if os.environ.get(NAMESPACE_ENV) != "1":
        return False
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return False
    return names == ["lo"]


def loopback_namespace_command(argv: list[str]) -> list[str]:
    """``unshare -n`` command that brings loopback up and runs ``argv`` with NAMESPACE_ENV=1."""
    quoted = " ".join(_shell_quote(a) for a in argv)
    return ["unshare", "-n", "sh", "-c", f"ip link set lo up && {NAMESPACE_ENV}=1 exec {quoted}"]


def can_unshare_network() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    try:
        out = subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalOrthanc:
    """An Orthanc with a temporary configuration and storage; ``start()`` / ``stop()`` by PID."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        aet: str = "ORTHANC",
        http_port: int | None = None,
        dicom_port: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.aet = aet
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        self.extra = extra or {}
        self.process: subprocess.Popen | None = None
        self.config_path = self.workdir / "orthanc.json"
        self.log_path = self.workdir / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def write_config(self) -> None:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        plugins = [p for p in (dicomweb_plugin(),) if p]
        config = {
            "Name": "burnscope-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "DicomServerEnabled": True,
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "Plugins": plugins,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1,
            "DefaultEncoding": "Utf8",
            "UnknownSopClassAccepted": False,
            **self.extra,
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self, timeout_s: float = 30.0) -> "LocalOrthanc":
        binary = orthanc_binary()
        if not binary:
            raise RuntimeError("Orthanc is not installed (Debian package 'orthanc')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [binary, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        import requests

        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/system", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not become ready in {timeout_s} s: {self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop this Orthanc (SIGTERM to its PID, SIGKILL if it lingers)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- asking Orthanc back ---------------------------------------------------------------------
    def get(self, path: str) -> Any:
        import requests

        r = requests.get(f"{self.url}{path}", timeout=10)
        r.raise_for_status()
        return r.json()

    def instance_uids(self) -> dict[str, str]:
        """SOP Instance UID → Study Instance UID of every stored instance."""
        out = {}
        for orthanc_id in self.get("/instances"):
            tags = self.get(f"/instances/{orthanc_id}/simplified-tags")
            out[tags["SOPInstanceUID"]] = tags.get("StudyInstanceUID", "")
        return out

    def __enter__(self) -> "LocalOrthanc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
