"""The kill -9 drill: a realistic feed over four MLLP connections into a real `mpi serve`,
killed with SIGKILL at random moments and started again, while the senders resend what was
not acknowledged. Then the index is compared with an uninterrupted run of the same messages.

Shared by ``tests/drills/test_kill_mid_feed.py`` (small) and ``bench/drills.py`` (full size).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.drills.harness import (
    CountingConsumer,
    FeedSender,
    IndexState,
    JournalFacts,
    SenderFigures,
    ServeProcess,
    authorities_with_consumer,
    journal_facts,
    realistic_feed,
    replay_in_order,
    wait_until,
)

ESTABLISHMENTS = ("CHRU", "ICL", "MRUN", "CCEG")


@dataclass
class KillDrillReport:
    messages: int
    sender: SenderFigures
    facts: JournalFacts
    after: IndexState
    uninterrupted: IndexState
    kills: int
    recoveries: list[float] = field(default_factory=list)  # kill -> first ACK after restart
    restarts: list[float] = field(default_factory=list)  # kill -> /health/ready
    a31_received: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    peak_server_rss_mb: float = 0.0
    drain_seconds: float = 0.0  # after the last ACK, until the outbox and ITI-10 were done

    @property
    def a31_expected(self) -> set[str]:
        return {f"NTF{n}" for n in self.facts.notification_ids}

    @property
    def a31_retransmissions(self) -> int:
        return sum(count - 1 for count in self.a31_received.values())

    def lines(self, label: str) -> list[str]:
        s, f = self.sender, self.facts
        applied = sum(f.applied_per_message.values())
        recover = ", ".join(f"{r:.1f}" for r in self.recoveries) or "-"
        restart = ", ".join(f"{r:.1f}" for r in self.restarts) or "-"
        return [
            f"{label}: {self.messages} messages, {len(self.sender_lanes)} connections, "
            f"{self.kills} SIGKILL(s), {self.seconds:.1f} s",
            f"  sent {s.sent} frames ({s.resent} resent), acknowledged {s.acked}, applied "
            f"{applied} (distinct {len(f.applied_per_message)}), refused {len(s.rejected)}, "
            f"transient AE {s.transient_errors}",
            f"  restart to ready (s): {restart}; kill to first ACK after it (s): {recover}",
            f"  index after the kills == uninterrupted run: {self.after == self.uninterrupted} "
            f"({len(self.after.persons)} persons, {len(self.after.links)} links, "
            f"{len(self.after.reviews)} review tasks)",
            f"  outbox pending {f.outbox_pending}; ITI-10 notifications "
            f"{f.notifications_total} ({f.notifications_pending} pending), A31 received "
            f"{len(self.a31_received)} distinct, {self.a31_retransmissions} retransmitted "
            f"under the same MSH-10; done {self.drain_seconds:.1f} s after the last ACK",
            f"  peak resident memory of mpi serve and its workers: "
            f"{self.peak_server_rss_mb:.0f} MB",
        ]

    sender_lanes: list[object] = field(default_factory=list)


def run_kill_drill(workdir: Path, database_url: str, reference_url: str, messages: int,
                   kills: int, seed: int = 8, connections: int = 4,
                   progress: Callable[[str], None] | None = None,
                   env: dict[str, str] | None = None) -> KillDrillReport:
    """The drill on ``database_url`` (migrated, empty); the uninterrupted run on
    ``reference_url`` (empty). Kills land at random moments between 10 % and 90 % of the
    feed (seeded). ``env``: more settings of the server (MPI_WORKERS...)."""
    say = progress or (lambda text: None)
    rng = random.Random(seed)
    feed = realistic_feed(messages)
    moments = sorted(rng.sample(range(messages // 10, messages * 9 // 10), kills))
    consumer = CountingConsumer()
    authorities = authorities_with_consumer(workdir / "authorities.toml", consumer.port,
                                            (*ESTABLISHMENTS, "GCS"))
    server = ServeProcess(workdir, database_url,
                          {"MPI_AUTHORITIES": str(authorities), **(env or {})})
    due = threading.Event()
    first_ack_after: list[float] = []
    killed_at: list[float] = []
    dead_at: list[float] = []  # when the killed server and its workers were all gone

    def on_ack(acked: int) -> None:
        if moments and acked >= moments[0] and not due.is_set():
            moments.pop(0)
            due.set()
        if dead_at and len(first_ack_after) < len(dead_at):
            first_ack_after.append(time.monotonic() - killed_at[-1])

    report_restarts: list[float] = []
    stop_killer = threading.Event()

    def killer() -> None:
        while not stop_killer.is_set():
            if not due.wait(0.2):
                server.sample_memory()
                continue
            due.clear()
            # a random moment: a little after the threshold, mid-message more often than not
            time.sleep(rng.uniform(0, 0.3))
            server.sample_memory()
            killed_at.append(time.monotonic())
            server.kill()
            dead_at.append(time.monotonic())
            say(f"killed mpi serve ({len(killed_at)}/{kills})")
            server.start()
            report_restarts.append(time.monotonic() - killed_at[-1])

    started = time.monotonic()
    thread = threading.Thread(target=killer, daemon=True)
    try:
        server.start()
        thread.start()
        sender = FeedSender(server.ports["mllp"], feed, connections, timeout=10, on_ack=on_ack)
        figures = sender.run()
        stop_killer.set()
        thread.join(120)
        server.sample_memory()

        def settled() -> bool:
            facts = journal_facts(database_url)
            return facts.outbox_pending == 0 and facts.notifications_pending == 0

        fed = time.monotonic()
        # the dispatcher and the notifier catch up after the feed: allow for a long backlog
        wait_until(settled, 120 + messages * 0.1, "outbox and notifications delivered")
        drained = time.monotonic() - fed
        wait_until(lambda: len(consumer.counts()) >= journal_facts(database_url)
                   .notifications_total, 30, "every A31 received")
        seconds = time.monotonic() - started
    finally:
        stop_killer.set()
        server.stop()
        consumer.stop()
    facts = journal_facts(database_url)
    say("replaying the applied messages uninterrupted, in the order they were applied")
    from tests.drills.harness import index_state

    after = index_state(database_url)
    uninterrupted = replay_in_order(feed, facts.applied_order, reference_url,
                                    workdir / "reference")
    report = KillDrillReport(messages, figures, facts, after, uninterrupted, len(killed_at),
                             first_ack_after, report_restarts, dict(consumer.counts()),
                             seconds, server.peak_rss_kb / 1024, drained)
    report.sender_lanes = list(sender.lanes)
    return report
