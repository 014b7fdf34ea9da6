"""The workload generator is a pure function of the seed, and it draws every kind of step."""

from __future__ import annotations

from ledger.sim.world import FEATURES, T0, generate


def test_the_same_seed_draws_the_same_steps() -> None:
    config_a, steps_a = generate(7, 600)
    config_b, steps_b = generate(7, 600)
    assert config_a == config_b
    assert steps_a == steps_b
    assert generate(8, 600)[1] != steps_a


def test_a_longer_run_starts_with_the_shorter_one() -> None:
    """A step never depends on how many steps were asked for: a subsequence replays alone."""
    assert generate(3, 900)[1][:300] == generate(3, 300)[1]


def test_steps_are_numbered_and_time_never_runs_backwards() -> None:
    _, steps = generate(11, 2000)
    assert [s.index for s in steps] == list(range(2000))
    times = [s.at for s in steps]
    assert times == sorted(times)
    assert times[0] == T0
    assert all(s.at % 1_000_000 == 0 for s in steps)  # a 1 ms grid


def test_every_kind_of_step_and_fault_is_drawn() -> None:
    kinds: set[str] = set()
    armed = 0
    for seed in range(5):
        config, steps = generate(seed, 2000)
        kinds |= {s.kind for s in steps}
        armed += sum(1 for s in steps if s.fail)
        offsets = {n.offset for n in config.nodes}
        assert len(offsets) > 1  # clocks are skewed between nodes
    assert kinds >= {
        "publish_plan",
        "publish_prices",
        "add_org",
        "top_up",
        "add_customer",
        "purchase",
        "grant",
        "decide",
        "complete",
        "report",
        "report_batch",
        "settle",
        "stall",
        "resume",
        "redeliver",
        "expire_grants",
        "kill",
        "ops",
    }
    assert armed > 100


def test_plans_name_only_known_features() -> None:
    import json

    for seed in range(5):
        for step in generate(seed, 1000)[1]:
            if step.kind == "publish_plan":
                plan = json.loads(step.arg("plan_json"))
                assert set(plan["features"]) == set(FEATURES)
