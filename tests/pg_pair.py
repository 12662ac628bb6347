"""A PostgreSQL primary and a streaming standby of one major version (pg_versions.py) on
loopback, for the failover and standby-decoding tests (issue 14).

The standby is made by `pg_basebackup -R -C -S <slot>` (so the primary keeps a physical
slot for it, which synchronized_standby_slots can name) and runs with
hot_standby_feedback=on and, on 17+, sync_replication_slots=on: the settings
docs/failover.md asks for. Both run as the postgres user when the tests run as root
(TMPDIR must be o+x), with LD_LIBRARY_PATH at the version's own lib/ (env_for): without
it the standby's walreceiver loads Debian's libpq 15, which refuses the `sslnegotiation`
that pg_basebackup -R writes on 17 and later. The standby keeps whatever the primary's
postgresql.conf says (synchronized_standby_slots included, as a real copy would).
"""
import os
import subprocess

import pg_versions
from pgcdc_services import Postgres, ServiceError, _chown_tree


class VersionedPostgres(Postgres):
    """Postgres (tests/pgcdc_services.py) with another major version's binaries; `conf`
    lines are appended to postgresql.conf before the first start."""

    def __init__(self, major, conf="", **kw):
        super().__init__(**kw)
        self.major = major
        self.bin_dir = str(pg_versions.bin_dir(major))
        self.tool_env = pg_versions.env_for(major)
        self.extra_conf = conf

    def _append_conf(self, text):
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# pgcdc tests (pg_pair.py)\n" + text + "\n")

    def _prepare(self):
        super()._prepare()
        if self.extra_conf:
            self._append_conf(self.extra_conf)

    def promote(self):
        """pg_promote(), waiting until it is done."""
        out = self.psql("SELECT pg_promote(true, 60)", timeout=90)
        if out != "t":
            raise ServiceError(f"{self.name}: pg_promote returned {out!r}")


class Standby(VersionedPostgres):
    """A streaming standby of `primary`, following it through physical slot `slot`."""

    name = "standby"
    prepare_what = "pg_basebackup"

    def __init__(self, primary, slot="standby1", conf="", **kw):
        super().__init__(primary.major, conf=conf, **kw)
        self.primary = primary
        self.slot = slot

    def _prepare(self):
        if self.os_user:
            _chown_tree(self.workdir, self.os_user)
        self.datadir = os.path.join(self.workdir, "data")
        # primary_conninfo keeps the dbname: the slot sync worker needs one.
        res = subprocess.run(
            [os.path.join(self._bin, "pg_basebackup"), "-D", self.datadir,
             "-d", self.primary.dsn, "-R", "-X", "stream", "-C", "-S", self.slot,
             "-c", "fast", "--no-sync"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180,
            **self._as_user())
        if res.returncode != 0:
            raise ServiceError(f"pg_basebackup failed with status {res.returncode}:\n"
                               f"{res.stdout}")
        sync = "sync_replication_slots = on\n" if self.major >= 17 else ""
        # The primary's postgresql.conf came along: later lines win.
        self._append_conf(f"port = {self.port}\n"
                          f"unix_socket_directories = '{self.workdir}'\n"
                          "hot_standby = on\nhot_standby_feedback = on\n" + sync +
                          self.extra_conf)
