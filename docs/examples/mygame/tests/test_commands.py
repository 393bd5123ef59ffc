"""mygame's commands in virtual time: no test waits for the clock on the wall."""

from evasync import create_object, get_object
from evasync.testing import VirtualRuntime
from evasync.transcript import check

from mygame.characters import Character
from mygame.commands import FISHING_TIME, GROWING_TIME, bloom


def test_a_new_character_can_fish():
    with VirtualRuntime() as rt:
        ann = create_object(Character, key="Ann")
        heard = rt.listen(ann)
        ann.execute_cmd("fish")
        assert heard.take() == ["You cast your line into the pond."]
        rt.advance(FISHING_TIME)
        assert heard.take() == ["Something tugs at the line: you land a perch."]


def test_a_seed_flowers_after_a_reload():
    with VirtualRuntime() as rt:
        ann = create_object(Character, key="Ann")
        heard = rt.listen(ann)
        ann.execute_cmd("plant Rose")
        rt.reload()
        ann = get_object(ann.id)  # the object from before the reload is stale
        rt.advance(GROWING_TIME)
        assert heard.take() == ["You plant the rose seed.", "Your rose is in bloom."]
        assert ann.db.garden == {"rose": "in bloom"}


def test_blooming_a_second_time_changes_nothing():
    with VirtualRuntime() as rt:
        ann = create_object(Character, key="Ann")
        heard = rt.listen(ann)
        bloom(ann, "rose")
        bloom(ann, "rose")
        assert heard.take() == ["Your rose is in bloom."]


def test_a_seed_is_planted_once():
    check("""
> plant rose
You plant the rose seed.
> plant rose
There is rose in your garden already.
> garden
rose: growing
""", [], typeclass="mygame.characters:Character")
