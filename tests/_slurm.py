"""A throw-away single-node SLURM on loopback for the tests: munged, slurmctld and slurmd in a temporary folder.

Debian's packages (``slurmctld``, ``slurmd``, ``munge``, ``slurm-client``; ``scripts/install-test-services.sh``
installs them). No cgroups and no accounting: ``proctrack/linuxproc``, ``task/none``, ``select/cons_tres``.
Everything runs as root in the foreground of processes this module starts and stops (by their handles);
ports are free ones picked at start. :func:`start` raises :class:`SlurmUnavailable` with the reason when
the daemons cannot run here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NODE_CPUS = 2
NODE_MEMORY_MB = 8000
START_TIMEOUT_S = 60


class SlurmUnavailable(RuntimeError):
    """Why a local SLURM cannot run on this machine."""


@dataclass
class LocalSlurm:
    root: Path
    conf: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What the SLURM client commands (sbatch, squeue, scancel) need: ``SLURM_CONF``."""
        return {"SLURM_CONF": str(self.conf)}

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            path = self.root / name
            if path.is_file():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job, wait for them to end, stop the daemons (last started first), remove the folder."""
        env = {**os.environ, **self.env}
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True, timeout=30)
            if out.returncode != 0 or not out.stdout.strip():
                break
            time.sleep(0.5)
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(root: Path) -> str:
    return f"""ClusterName=robustsegtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def start() -> LocalSlurm:
    """Start munged, slurmctld and slurmd on loopback; return once the node is idle (else SlurmUnavailable)."""
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
               if shutil.which(b) is None]
    if missing:
        raise SlurmUnavailable(f"SLURM not installed ({', '.join(missing)} missing); "
                               "scripts/install-test-services.sh installs slurmctld, slurmd, slurm-client and munge")
    if os.geteuid() != 0:
        raise SlurmUnavailable("a local SLURM needs root (slurmd launches jobs, munged runs with --force)")
    root = Path(tempfile.mkdtemp(prefix="rs-slurm-", dir="/tmp"))  # short: unix socket paths <= 107 bytes
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_conf(root))
    slurm = LocalSlurm(root, conf)
    env = {**os.environ, **slurm.env}
    commands = [
        ["munged", "--foreground", "--force", f"--socket={root}/munge/munge.sock", f"--key-file={key}",
         f"--log-file={root}/munged.log", f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed"],
        ["slurmctld", "-D", "-i", "-f", str(conf)],
        ["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
    ]
    try:
        for cmd in commands:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            slurm.processes.append(proc)
            time.sleep(1.0)
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{cmd[0]} exited with code {proc.returncode} at start\n{slurm.logs()}")
        deadline = time.monotonic() + START_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True,
                                 timeout=30)
            state = out.stdout.strip()
            if out.returncode == 0 and state == "idle":
                return slurm
            time.sleep(1.0)
        raise SlurmUnavailable(f"the node did not become idle within {START_TIMEOUT_S} s (state {state!r})\n"
                               f"{slurm.logs()}")
    except BaseException:
        slurm.stop()
        raise
