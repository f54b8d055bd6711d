"""A real single-node Slurm cluster for the Slurm tests (``make test-slurm``).

Installs the Debian packages when they are missing, writes a munge key and a localhost
``slurm.conf`` (one node, 2 CPUs, one partition, ``proctrack/linuxproc``, ``task/none``, no
accounting) into a temporary folder, starts munged, slurmctld and slurmd as child processes
in the foreground, and waits until the node is idle. ``stop()`` cancels the cluster's jobs,
stops exactly the processes it started (by their ids, then any slurmstepd they left behind,
found by this cluster's config path in its environment) and removes the folder.

Everything that goes wrong raises ``SlurmHarnessError`` with the daemons' log tails: a
missing package or a daemon that does not come up is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# binary -> Debian package
BINARIES = {
    "munged": "munge",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sbatch": "slurm-client",
    "squeue": "slurm-client",
    "scontrol": "slurm-client",
    "scancel": "slurm-client",
    "sinfo": "slurm-client",
    "srun": "slurm-client",
}
PARTITION = "agrtest"
CPUS = 2
# How long a requeued job waits before it may start again (Slurm's requeue delay is
# AuthInfo's cred_expire, 120 s by default; slurm.conf(5)). Short here to keep the tests
# short; everything else about a requeue is Slurm's default behaviour.
CRED_EXPIRE_S = 20


# The site file the tests use; the README shows it verbatim (tests/launch/test_slurm_watch.py).
SITE_CONFIG = f"""\
# configs/local/slurm.yaml: the single-node CPU Slurm of `make test-slurm`
hydra:
  launcher:
    partition: {PARTITION}    # your partition (and `account: ...` where your site needs one)
    gpus_per_node: null   # CPU nodes: request no GPU (configs/launcher/slurm.yaml asks for 1)
    cpus_per_task: 1
    mem_gb: 1
    timeout_min: 30       # minutes per attempt; a task past it is requeued and resumes
"""


class SlurmHarnessError(RuntimeError):
    pass


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path.name}: no such file)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path.name} (last {len(text)} lines) ---\n" + "\n".join(text)


def ensure_packages(timeout_s: float = 600) -> str:
    """Install the Debian packages whose binaries are missing; returns what it did."""
    missing = sorted({pkg for binary, pkg in BINARIES.items() if shutil.which(binary) is None})
    if not missing:
        return "slurm and munge are installed"
    if os.geteuid() != 0:
        raise SlurmHarnessError(
            f"the Slurm tests need the Debian packages {' '.join(missing)}, and installing "
            "them needs root: run `sudo apt-get install -y " + " ".join(missing) + "`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    log = []
    for attempt in (install, ["apt-get", "update"], install):
        result = subprocess.run(
            attempt, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        log.append(f"$ {' '.join(attempt)} -> {result.returncode}\n{result.stdout[-2000:]}")
        log.append(result.stderr[-2000:])
        if attempt is install and result.returncode == 0:
            break
    still = sorted(b for b in BINARIES if shutil.which(b) is None)
    if still:
        raise SlurmHarnessError(
            f"could not install {' '.join(missing)} (still missing: {' '.join(still)}):\n"
            + "\n".join(log)[-4000:]
        )
    return f"installed {' '.join(missing)}"


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


class LocalSlurm:
    """One node (this machine, 127.0.0.1) with ``CPUS`` CPUs in partition ``PARTITION``."""

    def __init__(self, parent: str | Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="agr-slurm-", dir=parent))
        # munged insists that every directory above its socket is world-executable
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ----------------------------------------------------------------- files
    def _write_config(self) -> None:
        root = self.root
        for name in ("state", "spool", "logs"):
            (root / name).mkdir()
        key = root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, slurmd_port = free_ports(2)
        memory = max(1024, int(_memory_mb() * 0.8))
        node = (
            f"NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={self.node} CPUs={CPUS} "
            f"RealMemory={memory} State=UNKNOWN"
        )
        self.conf.write_text(
            f"""# agr-suite test cluster: written by tests/slurm_cluster.py, removed after the tests
ClusterName=agrtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / "munge.socket"},cred_expire={CRED_EXPIRE_S}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "logs" / "slurmctld.log"}
SlurmdLogFile={root / "logs" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
SlurmdParameters=config_overrides
{node}
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def site_config(self) -> str:
        """configs/local/slurm.yaml for this cluster, as the README shows it."""
        return SITE_CONFIG

    # ----------------------------------------------------------------- daemons
    def _spawn(self, name: str, command: list[str]) -> None:
        out = (self.root / "logs" / f"{name}.out").open("w")
        self.processes[name] = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # a Ctrl-C at the terminal reaches pytest, which stops us
        )
        out.close()

    def _wait(self, what: str, ready, timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SlurmHarnessError(
                        f"{name} exited with status {process.returncode} while waiting for "
                        f"{what}\n{self.log_tails()}"
                    )
            if ready():
                return
            time.sleep(0.5)
        raise SlurmHarnessError(
            f"timed out after {timeout_s:.0f}s waiting for {what}\n{self.log_tails()}"
        )

    def _node_state(self) -> str:
        result = self.run(["sinfo", "-h", "-n", self.node, "-o", "%T"], check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def start(self, timeout_s: float = 120) -> None:
        try:
            self._write_config()
            root = self.root
            self._spawn(
                "munged",
                [
                    "munged",
                    "--foreground",
                    f"--key-file={root / 'munge.key'}",
                    f"--socket={root / 'munge.socket'}",
                    f"--pid-file={root / 'munged.pid'}",
                    f"--seed-file={root / 'munged.seed'}",
                    f"--log-file={root / 'logs' / 'munged.log'}",
                ],
            )
            self._wait("munged's socket", (root / "munge.socket").exists, timeout_s)
            self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
            self._wait(
                "slurmctld to answer",
                lambda: self.run(["scontrol", "ping"], check=False).returncode == 0,
                timeout_s,
            )
            self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
            self._wait("the node to be idle", lambda: self._node_state() == "idle", timeout_s)
        except BaseException:
            self.stop()
            raise

    def run(self, command: list[str], check: bool = True, timeout: float = 60):
        """A Slurm client command against this cluster."""
        result = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise SlurmHarnessError(
                f"{' '.join(command)} -> {result.returncode}: {result.stderr.strip()}\n"
                f"{self.log_tails()}"
            )
        return result

    def log_tails(self, lines: int = 30) -> str:
        logs = self.root / "logs"
        names = ["slurmctld.log", "slurmd.log", "munged.log"]
        names += [f"{name}.out" for name in ("munged", "slurmctld", "slurmd")]
        return "\n".join(_tail(logs / name, lines) for name in names)

    def jobs(self) -> list[str]:
        result = self.run(["squeue", "-h", "-o", "%A"], check=False)
        return result.stdout.split() if result.returncode == 0 else []

    def stop(self, timeout_s: float = 60) -> list[str]:
        """Cancel every job, stop the daemons this object started and anything they left
        behind, and remove the folder. Returns what it had to kill forcibly."""
        forced = []
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            jobs = self.jobs()
            if jobs:
                self.run(["scancel", *jobs], check=False)
                deadline = time.time() + timeout_s
                while self.jobs() and time.time() < deadline:
                    time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                forced.append(name)
        for pid in self.leftover_processes():
            try:
                os.kill(pid, signal.SIGKILL)
                forced.append(f"pid {pid}")
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
        return forced

    def leftover_processes(self) -> list[int]:
        """Processes other than ours that carry this cluster's config in their environment
        (slurmstepd and job tasks that outlived slurmd)."""
        marker = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                pids.append(int(entry.name))
        return pids
