"""SIGHUP between the start of `turnout serve` and the moment the gateway reloads on it."""

from __future__ import annotations

import signal
import threading
from typing import Any


class HeldHangups:
    """SIGHUP's default action ends the process. From `hold` (the start of `turnout serve`) until
    the gateway listens and reloads on it, a SIGHUP is noted and acted on once started (a reload
    asked while starting is one reload, then); once the gateway stops reloading (its shutdown),
    SIGHUP is ignored, so a reload asked during a drain does not end it."""

    arrived = False

    @classmethod
    def hold(cls) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, cls._note)

    @classmethod
    def _note(cls, signum: int, frame: Any) -> None:
        cls.arrived = True

    @classmethod
    def take(cls) -> bool:
        arrived, cls.arrived = cls.arrived, False
        return arrived
