"""One process at a time per campaign: two runners would compute the same picks in the same directories.

The runner (host:pid) and a heartbeat live in the campaign row. Another process may take over when the
runner is gone: on the same host when its pid is dead (e.g. after SIGKILL), on another host when the heartbeat
is older than `STALE_SECONDS` (the runner refreshes it every `BEAT_SECONDS` from a background thread).
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import timedelta

from tansaku import TansakuError
from tansaku.processes import pid_alive
from tansaku.store.database import Database
from tansaku.store.tables import Campaign, utcnow

BEAT_SECONDS = 30.0
STALE_SECONDS = 180.0


def me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_alive(runner: str, heartbeat) -> bool:
    host, _, pid = runner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) != os.getpid() and pid_alive(int(pid))
    return heartbeat is not None and utcnow() - heartbeat < timedelta(seconds=STALE_SECONDS)


class CampaignLock:
    """Context manager: claim the campaign, keep the heartbeat fresh, release on exit."""

    def __init__(self, db: Database, campaign_id: int):
        self.db, self.campaign_id = db, campaign_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CampaignLock:
        with self.db.session() as session:
            campaign = session.get(Campaign, self.campaign_id, with_for_update=True)
            if campaign.runner and campaign.runner != me() and runner_alive(campaign.runner, campaign.heartbeat):
                raise TansakuError(f"campaign {campaign.name!r} is being run by {campaign.runner} (heartbeat "
                                   f"{campaign.heartbeat:%Y-%m-%d %H:%M:%S} UTC); wait for it to finish, or stop "
                                   "it: a dead runner is taken over automatically")
            campaign.runner, campaign.heartbeat = me(), utcnow()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(BEAT_SECONDS):
            with self.db.session() as session:
                campaign = session.get(Campaign, self.campaign_id)
                if campaign.runner == me():
                    campaign.heartbeat = utcnow()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.db.session() as session:
            campaign = session.get(Campaign, self.campaign_id)
            if campaign.runner == me():
                campaign.runner = None
