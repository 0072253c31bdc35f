"""Two worker processes share one study through a throwaway PostgreSQL server, as on two machines."""

import glob
import importlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

WORKER = """
import sys, time
from pathlib import Path
from ferlab.experiments.search_space import Param, SearchSpace
from ferlab.experiments.tune import tune

url, data, out, seed, ready = sys.argv[1:]
Path(ready).touch()
deadline = time.monotonic() + 120
# Start together (imports take seconds), so that both workers take trials.
while len(list(Path(ready).parent.glob("ready-*"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
space = SearchSpace((Param("optim.lr", "float", 1e-4, 1e-2, log=True),))
tune(space, data=data, out=out, trials=4, storage=url, study_name="shared", seed=int(seed), epochs=1,
     prune=False, overrides=["data.batch_size=32", "data.augment.preset=none", "data.image_size=24"])
"""


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    return candidates[-1] if candidates else None


def _driver() -> str:
    """The URL scheme naming an installed driver (plain postgresql:// means psycopg 3 or 2 by SQLAlchemy version)."""
    for module, scheme in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return scheme
    pytest.skip("no PostgreSQL driver for Python: pip install 'psycopg[binary]' (or psycopg2-binary)")


def _unprivileged() -> tuple[list[str], str | None]:
    """A command prefix that runs the server as a normal user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    users = [u for u in ("postgres", "nobody") if _user_exists(u)]
    if not runuser or not users:
        pytest.skip("running as root, and no runuser or unprivileged user to run PostgreSQL as")
    return [runuser, "-u", users[0], "--"], users[0]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two processes and a database server: some 30 s
def test_two_workers_share_one_study(tree, tmp_path):
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin")
    driver = _driver()
    prefix, user = _unprivileged()
    # pytest's tmp_path is private to root; a server running as another user needs a folder of its own.
    cluster = Path(tempfile.mkdtemp(prefix="ferlab-pg-")) if user else tmp_path / "pg"
    cluster.mkdir(exist_ok=True)
    if user:
        shutil.chown(cluster, user)
    port = _free_port()
    server = [*prefix, pg_ctl, "-D", str(cluster / "data"), "-l", str(cluster / "server.log")]
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run([*prefix, initdb, "-D", str(cluster / "data"), "-A", "trust", "-U", "ferlab", "--no-sync",
                        "--no-locale", "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run([*server, "-w", "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {cluster} -c fsync=off",
                        "start"], check=True, capture_output=True, timeout=60)
        admin = sqlalchemy.create_engine(f"{driver}://ferlab@127.0.0.1:{port}/postgres",
                                         isolation_level="AUTOCOMMIT")  # CREATE DATABASE refuses a transaction
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text("CREATE DATABASE tune"))
        admin.dispose()
        url = f"{driver}://ferlab@127.0.0.1:{port}/tune"

        outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
        for seed, out in enumerate(outs):
            with (tmp_path / f"worker-{seed}.log").open("w") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", WORKER, url, str(tree), str(out), str(seed),
                     str(tmp_path / f"ready-{seed}")],
                    stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},  # two workers on a small CPU: no oversubscription
                ))
        for seed, proc in enumerate(procs):
            assert proc.wait(timeout=300) == 0, (tmp_path / f"worker-{seed}.log").read_text()[-3000:]

        study = optuna.load_study(study_name="shared", storage=url)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        # 4, or 5 if both workers passed their stop check in the same instant.
        assert len(complete) >= 4 and len(study.trials) == len(complete)
        assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in complete} == {str(p.pid) for p in procs}
        folders = [{p.name for p in (out / "trials").iterdir()} for out in outs]
        assert not folders[0] & folders[1] and folders[0] | folders[1] == {str(t.number) for t in complete}
        assert all((out / "best.yaml").is_file() and (out / "trials.csv").is_file() for out in outs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        if (cluster / "data" / "postmaster.pid").exists():
            subprocess.run([*server, "-m", "immediate", "stop"], check=False, capture_output=True, timeout=60)
        if user:
            shutil.rmtree(cluster, ignore_errors=True)
