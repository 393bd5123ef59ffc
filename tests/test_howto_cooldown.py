"""The cooldown howto's power attack: what it says while the cooldown runs."""

from __future__ import annotations

import pytest

from howtos.cooldown import COOLDOWN, CooldownCmdSet

from tests._commands_support import Player, rt  # noqa: F401  (rt is a fixture)


@pytest.fixture
def fighter(rt):
    fighter = Player(rt, "Fighter", CooldownCmdSet)
    fighter.types("powerattack ogre")
    assert fighter.heard() == ["You unleash a power attack on ogre!"]
    return fighter


@pytest.mark.parametrize("waited, said", [
    (0, "30 more seconds"),
    (0.4, "30 more seconds"),   # 29.6 s left: rounded up, never down
    (10, "20 more seconds"),
    (28.5, "2 more seconds"),
    (29, "1 more second"),      # one second, singular
    (29.6, "1 more second"),    # 0.4 s left is not "0 more seconds"
])
def test_the_time_left_is_rounded_up_and_properly_pluralised(rt, fighter, waited, said):
    rt.advance(waited)
    fighter.types("pa ogre")
    assert fighter.heard() == [f"You are still gathering strength: {said}."]


def test_the_attack_is_ready_again_after_exactly_the_cooldown(rt, fighter):
    rt.advance(COOLDOWN)
    fighter.types("pa ogre")
    assert fighter.heard() == ["You unleash a power attack on ogre!"]
