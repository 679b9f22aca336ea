"""Optuna internals the shared search storage needs, isolated. Importing this module imports
nothing of Optuna or SQLAlchemy (``import tfcompress`` stays light): they are the objects passed
in, and SQLAlchemy loads when ``beating_trial_ids`` runs.

Checked against Optuna 4 and 5 (5.1.0 here). ``FrozenTrial`` exposes a trial's ``number``
but not its storage id, which the storage's heartbeat API takes; and the RDB storage has no
public call that lists which trials hold a heartbeat.
"""


def trial_id(trial) -> int:
    """The storage id of a trial (``FrozenTrial._trial_id``), as ``storage.record_heartbeat``
    takes it."""
    return trial._trial_id


def beating_trial_ids(storage) -> set:
    """The ids of the trials that hold a heartbeat row in an ``RDBStorage`` (Optuna's
    ``trial_heartbeats`` table, read through the storage's SQLAlchemy ``engine``)."""
    import sqlalchemy  # loaded with the search, not on import

    with storage.engine.connect() as connection:
        return {row[0] for row in connection.execute(
            sqlalchemy.text("SELECT trial_id FROM trial_heartbeats"))}
