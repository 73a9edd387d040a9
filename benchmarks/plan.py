"""How big a run is: ``--quick``, the default full run, and ``--large``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """Sizes and call counts of one run."""

    #: Conversation lengths (messages) the per-backend and baseline matrices visit.
    lengths: tuple[int, ...] = (10, 100, 1_000, 10_000)
    #: Timed calls per operation at each length: at least these, and up to
    #: ``max_calls`` while an operation's calls stay within ``call_budget`` seconds.
    max_calls: int = 60
    call_budget: float = 0.5
    length_calls: tuple[tuple[int, int], ...] = ((10, 60), (100, 60), (1_000, 20), (10_000, 5))
    #: Numbers of stored conversations (memory and Redis, and the Redis baselines).
    scales: tuple[int, ...] = (1_000, 10_000, 100_000)
    #: Extra sizes for our Redis store only (``--large``: one million).
    redis_only_scales: tuple[int, ...] = ()
    #: Timed calls per operation at each number of conversations, and a time cap (s).
    scale_calls: int = 200
    scale_budget: float = 0.6
    #: Concurrency: processes, and appends per process for each backend.
    workers: int = 4
    appends: tuple[tuple[str, int], ...] = (
        ("memory", 10_000),
        ("redis", 1_500),
        ("zerodb", 150),
        ("sqlite", 150),
        ("postgresql", 200),
        ("original", 1_500),
    )
    quick: bool = False

    def calls_at(self, length: int) -> int:
        """Timed calls per operation at ``length`` messages."""
        return dict(self.length_calls)[length]

    def appends_for(self, backend: str) -> int:
        """Appends each concurrent worker makes on ``backend``."""
        return dict(self.appends)[backend]

    @classmethod
    def full(cls, *, large: bool = False) -> Plan:
        """The default run (a few minutes on two cores)."""
        return cls(redis_only_scales=(1_000_000,) if large else ())

    @classmethod
    def smoke(cls) -> Plan:
        """``--smoke``: tiny sizes that only prove the code runs (the test suite's run)."""
        return cls(
            lengths=(10, 100),
            length_calls=((10, 3), (100, 3)),
            max_calls=3,
            call_budget=0.01,
            scales=(100, 300),
            scale_calls=5,
            scale_budget=0.05,
            workers=2,
            appends=(
                ("memory", 50),
                ("redis", 20),
                ("zerodb", 5),
                ("sqlite", 5),
                ("postgresql", 5),
                ("original", 20),
            ),
            quick=True,
        )

    @classmethod
    def quick_run(cls, *, large: bool = False) -> Plan:
        """``--quick``: smaller sizes, fewer calls; the same tables."""
        return cls(
            lengths=(10, 100, 1_000),
            length_calls=((10, 15), (100, 15), (1_000, 6)),
            max_calls=20,
            call_budget=0.15,
            scales=(1_000, 10_000),
            redis_only_scales=(1_000_000,) if large else (),
            scale_calls=40,
            scale_budget=0.15,
            workers=3,
            appends=(
                ("memory", 2_000),
                ("redis", 300),
                ("zerodb", 30),
                ("sqlite", 40),
                ("postgresql", 40),
                ("original", 300),
            ),
            quick=True,
        )
