"""Storage roles: one interface each, an embedded implementation and a real one.

Open them with :func:`shared.storage.factory.open_stores` (or one ``open_*`` function);
domain code sees only the interfaces re-exported here.
"""

from shared.storage.candidates import Candidates, CandidateStore, VersionInfo
from shared.storage.event_log import EventLog, LogConsumer, LogRecord
from shared.storage.history import EventHistoryStore
from shared.storage.user_state import UserState, UserStateStore, UserStateUpdate

__all__ = [
    "CandidateStore",
    "Candidates",
    "EventHistoryStore",
    "EventLog",
    "LogConsumer",
    "LogRecord",
    "UserState",
    "UserStateStore",
    "UserStateUpdate",
    "VersionInfo",
]
