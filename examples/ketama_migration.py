"""Moving a memcached tier from a ketama client (uhashring, pylibmc) to buttress.

Run it: ``python examples/ketama_migration.py`` (uhashring optional: with it installed,
step 1 checks placement against it). Plain dicts stand in for the memcached servers.

1. Same placement: ``HashRing.ketama(servers)`` puts every key on the server the old
   client used, so you can switch clients with a warm cache.
2. Adding a server: plan the move (``ReshardPlan``) and warm the new server with exactly
   the keys it will own *before* the clients switch to the bigger ring.
3. Leaving ketama for the default ring (faster lookups, no weight renormalisation) is a
   change of hash: most keys move. The plan says how many, so you can decide to do it
   during a quiet hour or to keep ketama.
"""

from __future__ import annotations

from buttress.hashing import HashRing, ReshardPlan

SERVERS = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]
KEYS = [f"session:{i}" for i in range(20_000)]


def same_placement() -> HashRing:
    ring = HashRing.ketama(SERVERS)
    try:
        import uhashring
    except ImportError:
        print("1. uhashring not installed; skipping the cross-check")
        return ring
    old = uhashring.HashRing(SERVERS, hash_fn="ketama")
    differ = sum(ring.node_for(k) != old.get_node(k) for k in KEYS)
    print(f"1. keys placed differently from uhashring's ketama ring: {differ} of {len(KEYS)}")
    return ring


def add_a_server(ring: HashRing, caches: dict[str, dict[str, str]]) -> HashRing:
    bigger = HashRing.ketama([*SERVERS, "10.0.0.4:11211"])
    plan = ReshardPlan(ring, bigger)
    caches["10.0.0.4:11211"] = {}
    warmed = 0
    for move in plan.moved(KEYS):
        value = caches[move.source].get(str(move.key))
        if value is not None:  # copy, do not delete: old clients still read the source
            caches[move.target][str(move.key)] = value
            warmed += 1
    print(
        f"2. adding 10.0.0.4: {plan.moved_share():.1%} of the hash space moves, "
        f"in {len(plan.ranges)} ranges, all to {sorted({r.target for r in plan.ranges})}; "
        f"warmed {warmed} keys before switching"
    )
    hits = sum(str(k) in caches[bigger.node_for(k)] for k in KEYS)
    print(f"   after the switch, hit rate: {hits / len(KEYS):.1%}")
    return bigger


def leave_ketama(ring: HashRing) -> None:
    plan = ReshardPlan(ring, HashRing(ring.nodes))
    print(
        f"3. ketama -> default ring moves {plan.moved_share(samples=20_000):.0%} of the keys "
        "(a new hash); expect a cold cache for those, or stay on ketama"
    )


def main() -> None:
    ring = same_placement()
    caches: dict[str, dict[str, str]] = {server: {} for server in SERVERS}
    for key in KEYS:
        caches[ring.node_for(key)][key] = f"value of {key}"
    ring = add_a_server(ring, caches)
    leave_ketama(ring)


if __name__ == "__main__":
    main()
