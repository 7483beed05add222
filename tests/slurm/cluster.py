"""A one-node SLURM cluster on this machine, for the `slurm` test (Debian's slurm-wlm and munge).

Writes /etc/slurm/slurm.conf and gres.conf (the daemons and the jobs read that path only;
an existing file is kept aside and put back), starts munged, slurmctld and slurmd, and
stops exactly the processes it started, by their PIDs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CONF = Path("/etc/slurm")
MARK = "# written by lsh tests/slurm/cluster.py"


def available() -> str | None:
    """None when a cluster can be started here, else why not."""
    if os.geteuid() != 0:
        return "needs root (munged, slurmctld and slurmd run as system daemons)"
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if not shutil.which(b)]
    if missing:
        return f"Debian packages slurm-wlm and munge are not installed (missing {', '.join(missing)})"
    return None


class Cluster:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.host = socket.gethostname()
        self.pids: dict[str, int] = {}
        self.saved: dict[Path, bytes] = {}

    def _write(self, path: Path, text: str) -> None:
        if path.exists() and MARK not in path.read_text(errors="replace"):
            self.saved[path] = path.read_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{MARK}\n{text}")

    def start(self) -> None:
        d = self.dir
        for sub in ("state", "spool", "log", "run"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self._write(CONF / "slurm.conf", "\n".join([
            "ClusterName=local", f"SlurmctldHost={self.host}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "ReturnToService=2",
            "MinJobAge=600", "GresTypes=gpu",
            f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool",
            f"SlurmctldPidFile={d}/run/slurmctld.pid", f"SlurmdPidFile={d}/run/slurmd.pid",
            f"SlurmctldLogFile={d}/log/slurmctld.log", f"SlurmdLogFile={d}/log/slurmd.log",
            f"NodeName={self.host} CPUs=2 RealMemory=20000 Gres=gpu:1 State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP", "",
        ]))
        self._write(CONF / "gres.conf", f"AutoDetect=off\nNodeName={self.host} Name=gpu File=/dev/null Count=1\n")
        munge_run = Path("/run/munge")
        munge_run.mkdir(parents=True, exist_ok=True)
        shutil.chown(munge_run, "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["mungekey", "--create"], check=True)
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True)
        self.pids["munged"] = int(Path("/run/munge/munged.pid").read_text())
        subprocess.run(["slurmctld"], check=True)
        self.pids["slurmctld"] = self._pid(d / "run" / "slurmctld.pid")
        subprocess.run(["slurmd"], check=True)
        self.pids["slurmd"] = self._pid(d / "run" / "slurmd.pid")
        self._wait_idle()

    def _pid(self, path: Path, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not appear; see {self.dir / 'log'}")
            time.sleep(0.2)
        return int(path.read_text().split()[0])

    def _wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip()
            if out.startswith("idle"):
                return
            subprocess.run(["scontrol", "update", f"nodename={self.host}", "state=resume"], capture_output=True)
            time.sleep(1)
        raise RuntimeError(f"the node did not become idle: {out!r}; see {self.dir / 'log'}")

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        for path in (CONF / "slurm.conf", CONF / "gres.conf"):
            if path in self.saved:
                path.write_bytes(self.saved[path])
            elif path.exists() and MARK in path.read_text(errors="replace"):
                path.unlink()
