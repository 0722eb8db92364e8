"""A real single-node SLURM cluster for the tests: munge, MariaDB + slurmdbd (accounting, which
the executor plugin's `sacct` needs), slurmctld and slurmd, all started in the foreground from a
temporary folder on free ports, and stopped by PID.

Needs Debian's packages (`.ci/run` installs them: slurmctld slurmd slurm-client munge slurmdbd
mariadb-server) and root (the daemons run as root; no systemd). :func:`missing` says why not.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "mariadb-install-db", "mariadbd", "mariadb", "slurmdbd", "slurmctld",
            "slurmd", "sacctmgr", "sbatch", "sacct", "squeue", "sinfo", "scontrol", "scancel",
            "srun")
PACKAGES = "slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
# Inside a job the executor plugin's jobstep runs `srun` without SLURM_CONF, so SLURM must
# also find the test cluster's slurm.conf here; the cluster links it while it runs.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def missing() -> str | None:
    """Why a test cluster cannot start here, or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return (f"SLURM test cluster: {', '.join(absent)} not installed "
                f"(apt-get install {PACKAGES})")
    if os.geteuid() != 0:
        return "SLURM test cluster: its daemons must run as root"
    if SYSTEM_CONF.is_symlink():
        if SYSTEM_CONF.exists():
            return (f"SLURM test cluster: another one is running ({SYSTEM_CONF} links to "
                    f"{os.readlink(SYSTEM_CONF)})")
        SYSTEM_CONF.unlink()  # left by a test session that was killed
    elif SYSTEM_CONF.exists():
        return f"SLURM test cluster: {SYSTEM_CONF} belongs to a real cluster; not touching it"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ok, timeout: float, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ok():
            return
        time.sleep(0.2)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"SLURM test cluster: {what} not ready after {timeout:.0f} s\n{tail}")


class SlurmCluster:
    """One node (this machine, all its CPUs and ``mem_mb`` of memory), one partition
    ``debug``, accounting through slurmdbd. ``env`` points SLURM's commands at it."""

    def __init__(self, root: Path, name: str = "bnopttest", mem_mb: int = 4000):
        self.root, self.name, self.mem_mb = Path(root), name, mem_mb
        self.cpus = os.cpu_count() or 1
        self.node = socket.gethostname().split(".")[0]
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.linked = False
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- start ------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], log: Path) -> subprocess.Popen:
        out = open(log, "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                             start_new_session=True)
        out.close()
        self.procs.append((name, p))
        return p

    def _run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60,
                              **kw)

    def start(self) -> "SlurmCluster":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        r = self.root
        for d in ("munge", "run", "db", "spool/ctld", "spool/d", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o700)
        (r / "run").chmod(0o755)  # munge's socket folder must be world-readable
        key = r / "munge/munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.munge_socket = r / "run/munge.socket"
        self._spawn("munged", ["munged", "-F", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={r}/run/munged.pid",
                               f"--seed-file={r}/munge/munged.seed",
                               f"--log-file={r}/log/munged.log"], r / "log/munged.out")
        _wait("munged", self.munge_socket.exists, 20, r / "log/munged.log")

        # MariaDB for slurmdbd
        db_port, self.db_socket = _free_port(), r / "run/mysqld.sock"
        init = self._run(["mariadb-install-db", "--no-defaults", f"--datadir={r}/db",
                          "--user=root", "--auth-root-authentication-method=socket",
                          "--skip-test-db"])
        if init.returncode:
            raise RuntimeError(f"mariadb-install-db failed:\n{init.stdout}{init.stderr}")
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={r}/db", "--user=root",
                                 f"--socket={self.db_socket}", f"--port={db_port}",
                                 "--bind-address=127.0.0.1", f"--pid-file={r}/run/mariadb.pid",
                                 f"--log-error={r}/log/mariadb.log", "--skip-name-resolve"],
                    r / "log/mariadb.out")
        sql = ["mariadb", f"--socket={self.db_socket}", "-uroot", "-e"]
        _wait("mariadbd", lambda: self._run([*sql, "SELECT 1"]).returncode == 0, 60,
              r / "log/mariadb.log")
        password = secrets.token_hex(8)
        grant = self._run([*sql, f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}'; "
                                 "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"])
        if grant.returncode:
            raise RuntimeError(f"creating the slurm DB user failed: {grant.stderr}")

        dbd_port, ctld_port, d_port = _free_port(), _free_port(), _free_port()
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}\n"
        dbd = r / "slurmdbd.conf"  # slurmdbd reads it from SLURM_CONF's folder
        dbd.write_text(
            f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={dbd_port}\nSlurmUser=root\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={db_port}\nStorageUser=slurm\nStoragePass={password}\n"
            f"StorageLoc=slurm_acct_db\nPidFile={r}/run/slurmdbd.pid\n"
            f"LogFile={r}/log/slurmdbd.log\n")
        dbd.chmod(0o600)
        self.conf.write_text(
            f"ClusterName={self.name}\nSlurmctldHost={self.node}(127.0.0.1)\n{auth}"
            "CryptoType=crypto/munge\nSlurmUser=root\nSlurmdUser=root\n"
            f"SlurmctldPort={ctld_port}\nSlurmdPort={d_port}\n"
            f"StateSaveLocation={r}/spool/ctld\nSlurmdSpoolDir={r}/spool/d\n"
            f"SlurmctldPidFile={r}/run/slurmctld.pid\nSlurmdPidFile={r}/run/slurmd.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "JobAcctGatherType=jobacct_gather/none\nReturnToService=2\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost=localhost\nAccountingStoragePort={dbd_port}\n"
            f"AccountingStoragePass={self.munge_socket}\n"
            "SchedulerType=sched/backfill\nSchedulerParameters=bf_interval=1\n"
            "MinJobAge=300\nKillWait=5\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.mem_mb} State=UNKNOWN\n"
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n")
        self._spawn("slurmdbd", ["slurmdbd", "-D"], r / "log/slurmdbd.out")
        _wait("slurmdbd", lambda: self._run(["sacctmgr", "-n", "list", "cluster"]).returncode == 0,
              30, r / "log/slurmdbd.log")
        added = self._run(["sacctmgr", "-i", "add", "cluster", self.name])
        if added.returncode and "already exists" not in added.stdout + added.stderr:
            raise RuntimeError(f"sacctmgr add cluster failed: {added.stdout}{added.stderr}")
        if not SYSTEM_CONF.exists():
            SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
            SYSTEM_CONF.symlink_to(self.conf)
            self.linked = True
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)],
                    r / "log/slurmctld.out")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node],
                    r / "log/slurmd.out")
        _wait("the node", lambda: self._run(["sinfo", "-h", "-o", "%t"]).stdout.strip() == "idle",
              60, r / "log/slurmctld.log")

    # --- use --------------------------------------------------------------------------------
    def sacct(self, *args: str) -> list[list[str]]:
        r = self._run(["sacct", "-X", "-n", "--parsable2", "--starttime", "now-1day", *args])
        return [line.split("|") for line in r.stdout.splitlines() if line]

    # --- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every daemon this cluster started, newest first, by PID (TERM, then KILL)."""
        for name, p in reversed(self.procs):
            if p.poll() is None:
                with_suppress(os.killpg, p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with_suppress(os.killpg, p.pid, signal.SIGKILL)
                    p.wait(timeout=15)
        self.procs.clear()
        if self.linked and SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.unlink()
            self.linked = False


def with_suppress(fn, *args) -> None:
    try:
        fn(*args)
    except ProcessLookupError:
        pass
