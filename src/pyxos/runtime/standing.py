"""Opening a node's data dir, and saying whether the node may vote and why.

A node never votes with state it may have lost (docs/PROTOCOL.md, "Disk loss"):

- a data dir that is missing or empty is created afresh under a new random
  incarnation; the node then votes only once a majority of its peers have registered
  that incarnation (the core's ``Join``), which they refuse if they hold an older one
  of this node: then it stays a learner;
- a data dir that fails its checks (a record with a bad checksum, a commit index over
  missing slots, a damaged snapshot) is moved aside, kept for a post-mortem, and
  replaced by a fresh one: the same path as a lost disk;
- a data dir of another node or cluster is refused: that is an operator's mistake,
  and guessing could destroy the other cluster's data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pyxos.core.ready import HardState, Standing
from pyxos.core.replica import Replica
from pyxos.runtime.config import NodeConfig
from pyxos.storage import (
    CorruptStorageError,
    SnapshotInfo,
    Storage,
    engine_of,
    move_aside,
    open_storage,
)

LoggerLike = logging.Logger | logging.LoggerAdapter[logging.Logger]


def _open(config: NodeConfig, engine: str | None, sync: bool) -> Storage:
    return open_storage(
        engine,
        config.data_dir,
        node_id=config.node_id,
        cluster_id=config.cluster_id,
        members=tuple(sorted(config.members)) if config.check_members else None,
        sync=sync,
    )


def open_data_dir(
    config: NodeConfig, log: LoggerLike, *, sync: bool = True
) -> tuple[Storage, HardState, SnapshotInfo | None, Path | None]:
    """Open (or create) the data dir; a damaged one is moved aside and made anew.

    Returns the storage, what to restart from, the snapshot, and where a damaged data
    dir was moved (``None`` if it was not). ``sync=False`` is the ``skip-fsync`` test bug.
    """
    engine = config.storage or engine_of(config.data_dir)
    storage: Storage | None = None
    try:
        storage = _open(config, engine, sync)
        state, snapshot = storage.load()
        return storage, state, snapshot, None
    except CorruptStorageError as exc:
        if storage is not None:
            storage.close()
        moved = move_aside(config.data_dir)
        log.error(
            "data dir %s is damaged: %s. Moved it to %s (kept for a post-mortem); "
            "starting with a fresh data dir, which may not vote until the cluster "
            "registers it",
            config.data_dir,
            exc,
            moved,
        )
    storage = _open(config, engine, sync)
    state, snapshot = storage.load()
    return storage, state, snapshot, moved


def describe_standing(replica: Replica) -> dict[str, Any]:
    """Status fields: whether this node votes, and, if not, why and the way back.

    The reasons hold no commas or equals signs: ``INFO`` values with them are parsed
    into lists and dicts by clients such as redis-py.
    """
    standing = replica.standing
    out: dict[str, Any] = {
        "standing": standing.value,
        "voter": standing is Standing.VOTER,
        "incarnation": f"{replica.incarnation:x}",
    }
    if standing is Standing.JOINING:
        if replica.member_since > 0:
            out["standing_reason"] = (
                "new data dir of a node added to the cluster: it learns the log; it votes "
                "once the members have registered this data dir and a change made it a voter"
            )
        else:
            need = replica.config.registration_quorum()
            out["standing_reason"] = (
                f"new data dir: waiting for {need} of the other members to register it "
                "before it may vote; until then it only learns (start every member of a "
                "new cluster)"
            )
    elif standing is Standing.LEARNER:
        old = f"{replica.superseded:x}" if replica.superseded is not None else "unknown"
        out["superseded_incarnation"] = old
        out["standing_reason"] = (
            f"this data dir is new but the cluster holds node {replica.id}'s earlier one "
            f"(incarnation {old}): promises made with it may be lost so this node never "
            "votes; it catches up and serves reads as a learner. The way back is a "
            "membership change: "
            f"`pyxos member remove --id {replica.id}` then wipe its data dir then "
            f"`pyxos member add --id {replica.id} --peer HOST:PORT` and start it with "
            "`pyxos serve --join`; restarting or wiping it again keeps it a learner"
        )
    return out
