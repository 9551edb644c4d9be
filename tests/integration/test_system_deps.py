"""tools/install-system-deps.sh waits for apt's locks instead of failing at once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from fixtures import REPO

SCRIPT = REPO / "tools" / "install-system-deps.sh"


def _fake_tools(bin_dir: Path, busy_updates: int) -> Path:
    """``id`` (root), ``dpkg`` (nothing installed) and an ``apt-get`` whose first
    ``busy_updates`` updates fail on the list lock, as apt 2.6 does while another apt runs."""
    log = bin_dir / "apt.log"
    scripts = {
        "id": "#!/bin/sh\necho 0\n",
        "dpkg": "#!/bin/sh\nexit 1\n",
        "apt-get": f"""#!/bin/sh
echo "$@" >> {log}
case "$*" in
  *update*)
    n=$(grep -c update {log})
    if [ "$n" -le {busy_updates} ]; then
      echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
      echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
      exit 100
    fi ;;
esac
exit 0
""",
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return log


def _run(tmp_path: Path, busy_updates: int, timeout_s: int = 30) -> tuple[subprocess.CompletedProcess, str]:
    log = _fake_tools(tmp_path, busy_updates)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "APT_LOCK_POLL_S": "0",
           "APT_LOCK_TIMEOUT_S": str(timeout_s)}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return proc, log.read_text() if log.exists() else ""


def test_waits_for_the_list_lock_and_names_its_holder(tmp_path):
    proc, calls = _run(tmp_path, busy_updates=3)
    assert proc.returncode == 0, proc.stderr
    assert calls.count("update") == 4
    assert "waiting up to 30s for another apt process" in proc.stdout
    assert "held by process 4242 (apt-get)" in proc.stdout
    install = [line for line in calls.splitlines() if " install " in f" {line} "]
    assert install and "DPkg::Lock::Timeout=30" in install[0] and "orthanc" in install[0]


def test_gives_up_after_the_timeout(tmp_path):
    proc, calls = _run(tmp_path, busy_updates=10**6, timeout_s=0)
    assert proc.returncode == 1
    assert "Could not get lock" in proc.stderr
    assert " install " not in f" {calls} "
