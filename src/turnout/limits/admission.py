"""The admission step of the pipeline. With no limits configured every request is admitted;
the limit backends (per key, team, model and deployment) plug in behind `admit`."""

from __future__ import annotations

from turnout.domain.principal import Principal
from turnout.routing.catalog import Route


class Ticket:
    """What an admitted request holds until it ends (a concurrency slot, once limits exist)."""

    __slots__ = ()

    def release(self) -> None:
        return None


_ADMITTED = Ticket()


class Admission:
    def admit(self, principal: Principal, route: Route) -> Ticket:
        return _ADMITTED
